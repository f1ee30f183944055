"""The search space: which recipes the tuner may try, in which order, and what each layer can become.

Everything here is a recipe (recipe/), the same data ``quantize --recipe``
reads, so a trial is reproducible by hand. The space has five dimensions:

- scheme (and engine): whole-model schemes, fp16 first (the safe one), then most compressed first;
- observer: how activation ranges are read from one shared statistics pass;
- post-training algorithms: float-graph transforms (AdaRound, bias correction);
- engine: TensorFlow's converter for int8 when the model is a Keras or
  SavedModel source;
- per-layer precision (a recipe's ``tensors.NAME.precision``): int8, 16-bit
  activations, 4-bit weights or float, for single ops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from edgequant.calibrate import AUTO_CANDIDATES, DEFAULT_OBSERVER, Observer, parse_observer
from edgequant.recipe import Recipe, TensorRule
from edgequant.transforms import TransformName
from edgequant.tune.records import Objective
from edgequant.types import EngineName, Precision, Scheme, SourceKind

__all__ = ["SEARCH_SCHEMES", "STATIC", "uniform_recipes", "observer_choices", "ALGORITHMS", "ladder", "options",
           "with_precision", "start_scheme", "recipe_key", "converter_recipes", "scheme_precision", "below"]

# Whole-model schemes the tuner tries. fp16 first: it keeps float compute, so it meets nearly any budget,
# and it is one of the cheapest trials; a search cut short by its time or trial limit (real-size models
# take tens of seconds per trial) then still has a model within budget to return, and the search only
# looks for a smaller or faster one. Then the most compressed first (4-bit weights, then 8-bit; integer
# activations before float ones at equal weight size).
SEARCH_SCHEMES = (Scheme.FP16, Scheme.W4A8, Scheme.WEIGHT_ONLY_INT4, Scheme.INT8, Scheme.DYNAMIC,
                  Scheme.WEIGHT_ONLY_INT8, Scheme.INT16X8)
# Schemes with integer activations: the starting points of the per-layer search.
STATIC = (Scheme.W4A8, Scheme.INT8, Scheme.INT16X8)
# Observer of the first trial of a static scheme: the one edgequant uses when only statistics are given
# (calibrate.DEFAULT_OBSERVER); the others are tried on the user's metric when the budget is missed.
FIRST_OBSERVER = DEFAULT_OBSERVER
# Float-graph transforms tried on the starting scheme, one set per trial. AdaRound is edgequant's
# default for int8 and w4a8 (measured gains in pipeline.DEFAULT_TRANSFORMS); bias correction is the
# cheaper alternative. CLE is left out: on batch-norm-folded models it measured no gain.
ALGORITHMS: tuple[tuple[TransformName, ...], ...] = ((TransformName.ADAROUND,), (TransformName.BIAS_CORRECTION,))


def _base(scheme: Scheme, samples: int, observer: Observer | None, engine: EngineName = EngineName.LITERT) -> Recipe:
    # Transforms are explicit (none) so that every trial is cheap and says exactly what ran;
    # the algorithm stage adds them where the budget calls for them.
    return Recipe(version=1, scheme=scheme, engine=engine, observer=observer, transforms=(), samples=samples,
                  source="tune")


def uniform_recipes(schemes: Sequence[Scheme], samples: int) -> list[Recipe]:
    """One recipe per allowed scheme on the litert engine, in :data:`SEARCH_SCHEMES` order."""
    return [_base(s, samples, FIRST_OBSERVER if s in STATIC else None) for s in SEARCH_SCHEMES if s in schemes]


def converter_recipes(schemes: Sequence[Scheme], source: SourceKind, samples: int) -> dict[Scheme, Recipe]:
    """TensorFlow's converter: int8 (its own min-max calibration), for a Keras or SavedModel source."""
    if not source.has_tensorflow_graph or Scheme.INT8 not in schemes:
        return {}
    return {Scheme.INT8: _base(Scheme.INT8, samples, None, EngineName.TFLITE_CONVERTER)}


def observer_choices(tried: Observer | None) -> list[Observer]:
    """Every observer of edgequant's automatic choice except ``tried``, then entropy."""
    out = [o for o in AUTO_CANDIDATES if o != tried]
    entropy = parse_observer("entropy")
    return out + ([entropy] if entropy != tried else [])


def ladder(objective: Objective) -> tuple[Precision, ...]:
    """A layer's precisions, most compressed first; a fallback moves a layer one step along it.

    16-bit activations are skipped unless the objective is size: XNNPACK has no
    16x8 kernels, and in the benchmark (benchmarks/results/latest.json) int16x8
    ran 1.6x to 21x slower than the float model on 7 of the 8 zoo models
    (0.83x on the LSTM), so a float layer is as accurate and usually faster;
    it is only bigger (float weights).
    """
    if objective is Objective.SIZE:
        return (Precision.W4A8, Precision.INT8, Precision.INT16X8, Precision.FLOAT)
    return (Precision.W4A8, Precision.INT8, Precision.FLOAT)


def scheme_precision(scheme: Scheme, op: str, w4_ops: frozenset[str]) -> Precision:
    """The precision ``scheme`` gives an op: w4a8 gives 4-bit weights only to the ops that can take them."""
    if scheme is Scheme.W4A8:
        return Precision.W4A8 if op in w4_ops else Precision.INT8
    return Precision.INT16X8 if scheme is Scheme.INT16X8 else Precision.INT8


def options(current: Precision, steps: tuple[Precision, ...], able: dict[Precision, frozenset[str] | None],
            op: str, allowed: Sequence[Scheme]) -> list[Precision]:
    """The precisions above ``current`` on the ladder that this op can take and the user allows.

    ``able`` maps a precision to the op types litert-quantizer allows it for
    (None: any op). Per-layer precisions come from the same list as the
    schemes (``--schemes``), plus float, which is always allowed.
    """
    names = {s.value for s in allowed}
    up = steps[steps.index(current) + 1:] if current in steps else steps
    return [p for p in up if (p is Precision.FLOAT or p.value in names)
            and (able.get(p) is None or op in (able.get(p) or frozenset()))]


def below(current: Precision, floor: Precision, steps: tuple[Precision, ...],
          able: dict[Precision, frozenset[str] | None], op: str, allowed: Sequence[Scheme]) -> Precision | None:
    """One step down the ladder from ``current`` to a precision the op can take and the user allows,
    never below ``floor`` (the layer's scheme precision, always allowed)."""
    if current not in steps or floor not in steps or steps.index(current) <= steps.index(floor):
        return None
    lower = steps[steps.index(floor) + 1:steps.index(current)]
    usable = [p for p in options(floor, steps, able, op, allowed) if p in lower]
    return usable[-1] if usable else floor


def with_precision(recipe: Recipe, tensor: str, precision: Precision | None) -> Recipe:
    """``recipe`` with one layer's precision set (None: back to the scheme's)."""
    rules = dict(recipe.tensors)
    rule = rules.get(tensor, TensorRule())
    rule = dataclasses.replace(rule, precision=precision)
    if rule == TensorRule():
        rules.pop(tensor, None)
    else:
        rules[tensor] = rule
    # Sorted, so that the same plan reached by two paths is one recipe (and one trial).
    return dataclasses.replace(recipe, tensors=dict(sorted(rules.items())))


def start_scheme(meets: dict[Scheme, bool], allowed: Sequence[Scheme], objective: Objective) -> Scheme | None:
    """The static scheme the per-layer search starts from, given which uniform static trials met the budget.

    The most compressed one whose next step up can reach the budget: w4a8
    when int8 met it (a w4a8/int8 mix lies between them), else int8, with
    fallbacks above it and 4-bit weights tried again later. For the latency
    objective w4a8 is never the start: its speed depends on the model (in the
    benchmark 0.83x int8's latency on seed_mlp, 1.9x on resnet_like), and the
    uniform w4a8 trial still competes in the final choice.
    """
    static = [s for s in STATIC if s in allowed]
    if not static:
        return None
    if Scheme.W4A8 in static and objective is not Objective.LATENCY and meets.get(Scheme.INT8, False):
        return Scheme.W4A8
    for s in (Scheme.INT8, Scheme.W4A8, Scheme.INT16X8):
        if s in static:
            return s
    return None


def recipe_key(recipe: Recipe) -> str:
    """A canonical text for a requested recipe: the identity of a trial in the history."""
    import json

    return json.dumps(recipe.to_dict(), sort_keys=True)
