"""The orchestrator: the public API, wiring the stages in processing order.

    load (frontends) -> data -> transforms -> calibrate -> plan (recipe) -> rewrite (engines)
        -> validate/evaluate (runtime, evaluate) -> report

Each function here only wires stages; the work is in the stage packages.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edgequant._util import Progress, atomic_write, no_progress
from edgequant.data import DataLike, check_against_model, load_data, select_samples
from edgequant.calibrate import CalibrationStats, Observer, collect_stats, parse_observer, shared_stats
from edgequant.calibrate.plan import calibration_candidates
from edgequant.checks import check_labels, check_runs, check_samples, check_threads, classes_of
from edgequant.engines import ENGINES, Engine, check_supported, get_engine, resolve_engine
from edgequant.errors import EngineError, InputError, UnsupportedError
from edgequant.evaluate import evaluate_runners, fidelity_by_output, label_output
from edgequant.frontends import load_model, source_options
from edgequant.recipe import Recipe, TensorRule, plan
from edgequant.recipe.islands import is_attention_model, plan_islands
from edgequant.recipe.w4 import plan_w4
from edgequant.recipe import parse_transforms  # noqa: F401 - kept importable here, where it lived before recipe/
from edgequant.graph import WEIGHTED_OPS, index_limits, read_graph, signature_input_indices
from edgequant.graph.signature import stray_signature_outputs
from edgequant.runtime import Inputs, Runner, one_worker, rows
from edgequant.transforms import TransformName, get_transform, ordered, stored_mismatches
from edgequant.types import (CalibrationInput, Dataset, EngineName, Evaluation, FloatModel, IOType, Precision,
                             QuantizedModel, Record, Scheme, Signature, the_only)

__all__ = ["convert", "calibrate", "quantize", "run", "evaluate", "RunResult", "DEFAULT_SAMPLES", "resolve_model",
           "load_checked_data", "check_data_for", "input_limits", "read_tflite"]

F = TypeVar("F", bound=Callable[..., Any])

# Transforms on by default, per scheme, where the benchmark measured a gain
# (litert engine, 200 calibration samples, output SQNR vs float on held-out
# digits). AdaRound at 4-bit weights: w4a8 mobilenet_like 15.6 dB with bias
# correction -> 27.7 dB (top-1 -1.56 -> -0.44 pt; nearest rounding alone
# -31.1 pt), resnet_like 27.2 -> 37.7 dB, transformer 20.2 -> 33.4 dB; at
# least as good as bias correction on all 8 zoo models. At int8 it raised SQNR
# on 7 of 8 models (mobilenet_like 34.3 -> 36.5, resnet_like 42.8 -> 44.8 dB)
# and tied on the eighth, for 0.1 to 10 s more per model. With float or
# 16-bit activations the weights are the main error and AdaRound gains more:
# dynamic +0.8 to +13 dB on all 8 models, int16x8 +5 to +17 dB on 7 of 8.
# CLE is off by default: on batch-norm-folded models with per-channel weights
# it measured no gain. Weight-only int8, where the weights are the only error, the
# same as dynamic: held-out calibration samples 200-499 of the zoo +5.6 to +26 dB on
# 7 of 8 models (a tie on the eighth); on the real models' dev splits MobileNetV2
# 14.9 -> 26.5 dB, EfficientNet-Lite0 16.0 -> 22.9, BlazeFace 20.3 -> 30.8,
# PP-OCRv4 15.1 -> 32.1, and MiniLM 35.0 -> 34.7 (there the tournament drops it).
DEFAULT_TRANSFORMS: dict[Scheme, tuple[TransformName, ...]] = {
    Scheme.DYNAMIC: (TransformName.ADAROUND,),
    Scheme.WEIGHT_ONLY_INT8: (TransformName.ADAROUND,),
    Scheme.INT8: (TransformName.ADAROUND,),
    Scheme.INT16X8: (TransformName.ADAROUND,),
    Scheme.W4A8: (TransformName.ADAROUND,),
    Scheme.WEIGHT_ONLY_INT4: (TransformName.ADAROUND,),
}


# Calibration samples used when the user does not say: enough for stable
# min-max ranges on small models, few enough to calibrate in seconds.
DEFAULT_SAMPLES = 200
# The auto observer scores its candidates on this many calibration samples (see _tournament).
SCORE_SAMPLES = 32


@dataclasses.dataclass(frozen=True, eq=False)
class RunResult(Record):
    """Outputs of one inference, and how integer I/O was converted."""

    outputs: dict[str, np.ndarray] = dataclasses.field(repr=False, metadata={"json": False})
    input_dtype: str
    output_dtype: str
    notes: tuple[str, ...] = ()

    @property
    def output(self) -> np.ndarray:
        """The only output of a one-output model; an error naming the outputs otherwise (use outputs[NAME])."""
        return the_only(self.outputs, "one output (else read outputs[NAME])", InputError)


def check_measurement_options(threads: int, runs: int) -> None:
    check_threads(threads)
    check_runs(runs)


def resolve_model(model: FloatModel | str | Path, unsafe: bool = False, signature: str | None = None) -> FloatModel:
    if isinstance(model, FloatModel):
        return model
    if not isinstance(model, (str, Path)):
        raise InputError(f"model: expected a file path or a FloatModel (from edgequant.convert), found "
                         f"{type(model).__name__}")
    return load_model(model, unsafe=unsafe, signature=signature)


def input_limits(tflite: bytes, signature: Signature) -> dict[str, int]:
    """Rows of the embedding table each integer input indexes, by input name (ids beyond are refused).

    Read from the flatbuffer alone: checking data needs no interpreter (and no worker process).
    """
    by_index = index_limits(tflite)
    return {name: by_index[i] for name, i in signature_input_indices(tflite, signature.key).items() if i in by_index}


def check_data_for(data: DataLike, tflite: bytes, signature: Signature, resize: tuple[int, int] | None = None,
                   normalize: tuple[float, float] | None = None) -> Dataset:
    """Load ``data`` and check it against the model's inputs by name: shapes, dtypes, token-id ranges."""
    images = [t for t in signature.inputs if t.is_float and len(t.shape) == 4]
    # An image folder feeds a one-image-input model; its channel count comes from the model.
    channels = images[0].shape[-1] if len(signature.inputs) == 1 and images else None
    limits = input_limits(tflite, signature) if any(t.is_integer for t in signature.inputs) else {}
    return check_against_model(load_data(data, resize, normalize, channels), signature, limits)


def load_checked_data(data: DataLike, model: FloatModel, resize: tuple[int, int] | None = None,
                      normalize: tuple[float, float] | None = None) -> Dataset:
    return check_data_for(data, model.tflite, model.signature, resize, normalize)


def convert(model: Any, output: str | Path | None = None, unsafe: bool = False, *, example_inputs: Any = None,
            input_shapes: Any = None, layout: str | None = None, data: Any = None,
            signature: str | None = None) -> FloatModel:
    """Load any MODEL form (or a torch.nn.Module with ``example_inputs``) as a checked float .tflite; optionally
    write it. ``input_shapes``, ``layout`` and ``data`` (inputs for the conversion check) apply to PyTorch and
    ONNX sources (frontends.source_options)."""
    options = source_options(input_shapes, layout, data)
    if isinstance(model, (str, Path)):
        loaded = load_model(model, unsafe=unsafe, options=options, signature=signature)
    else:
        from edgequant.frontends.pytorch import convert_torch_module

        loaded = convert_torch_module(model, example_inputs, options)
    if output is not None:
        atomic_write(Path(output), loaded.tflite)
    return loaded


def _one_step(label: str) -> Callable[[F], F]:
    """Run a whole step's models in one LiteRT worker (see :func:`edgequant.runtime.one_worker`), each
    model's calibration pass on the same samples made once (:func:`edgequant.calibrate.shared_stats`)."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with one_worker(label), shared_stats():
                return fn(*args, **kwargs)
        return inner  # type: ignore[return-value]
    return wrap


@_one_step("quantize")
def quantize(model: FloatModel | str | Path, scheme: Scheme | str | None = None,
             engine: EngineName | str | None = None, calibration: DataLike | None = None, samples: int | None = None,
             io: IOType | str | None = None, output: str | Path | None = None, unsafe: bool = False,
             resize: tuple[int, int] | None = None, normalize: tuple[float, float] | None = None,
             observer: Observer | str | None = None, stats: CalibrationStats | str | Path | None = None,
             transforms: Sequence[str] | str | None = None, progress: Progress = no_progress,
             recipe: Recipe | Mapping[str, Any] | str | Path | None = None,
             signature: str | None = None, float_islands: bool | None = None,
             w4a8_plan: bool = True) -> QuantizedModel:
    """Quantize ``model`` with one scheme and engine; the result is checked to load and run in LiteRT.

    Static schemes need ``calibration`` data or saved ``stats`` (from
    :func:`calibrate`); ``observer`` picks how ranges are read from them.
    ``recipe`` (a Recipe, its dict, or a recipe JSON file) supplies the plan;
    keywords given here override it, each with a note. The result's
    ``recipe`` is the plan that ran, with the observer and transforms resolved.
    ``float_islands`` (recipe/islands.py): None plans them for attention models
    at int8 and w4a8 when the recipe sets no per-layer precision; True plans
    them for any model; False never. ``w4a8_plan`` (recipe/w4.py): at w4a8 with calibration data and no
    per-layer precision in the recipe, give 4-bit weights only to the layers whose 4-bit rounding costs least
    on that data; False gives every CONV_2D and FULLY_CONNECTED 4-bit weights.
    """
    # The plan first: a bad recipe or option fails before any model work.
    # A string such as "off" is truthy: taken as given, it would turn a plan on.
    if not (float_islands is None or isinstance(float_islands, bool)):
        raise InputError(f"float_islands: expected True, False or None, found {float_islands!r}")
    if not isinstance(w4a8_plan, bool):
        raise InputError(f"w4a8_plan: expected True or False, found {w4a8_plan!r}")
    chosen, notes_in = plan(recipe, scheme=scheme, engine=engine, io=io, observer=observer,
                            transforms=transforms, samples=samples)
    scheme_, io_ = chosen.require_scheme(), chosen.io
    precisions = chosen.precisions()
    auto = chosen.engine is EngineName.AUTO
    if not auto:  # a named engine is checked before any model work; auto needs to know the source
        _check_engine(get_engine(chosen.engine), chosen, scheme_, io_, precisions)
    explicit = chosen.transforms is not None
    names = chosen.transforms if chosen.transforms is not None else DEFAULT_TRANSFORMS.get(scheme_, ())
    overrides = chosen.tensor_observers()
    original = floats = resolve_model(model, unsafe, signature)
    eng, auto_note = resolve_engine(chosen.engine, scheme_, io_, floats)
    if auto:
        _check_engine(eng, chosen, scheme_, io_, precisions)
        notes_in.insert(0, auto_note)
    if precisions:
        eng.check_precisions(floats, scheme_, precisions, lambda name: chosen.field(f"tensors.{name}.precision"))
    candidates: list[CalibrationInput | None] = [None]
    n_samples = chosen.samples if chosen.samples is not None else DEFAULT_SAMPLES
    x = None if calibration is None else select_samples(
        load_checked_data(calibration, floats, resize, normalize), n_samples).inputs
    asked = dict(precisions)  # the recipe's own per-layer precisions (the plans below add theirs)
    islands = _islands_wanted(float_islands, scheme_, eng, precisions, floats)
    if islands:
        # Planned before the transforms, so that AdaRound leaves the layers kept float alone.
        plan_ = plan_islands(floats.tflite, x, keep=precisions)
        precisions = plan_.precisions
        notes_in += plan_.notes()
        if x is None:
            notes_in.append("float islands: no outlier test (it needs --calibration data, --stats has no channels)")
        chosen = _with_precisions(chosen, precisions)
    if w4a8_plan and _w4_wanted(scheme_, eng, asked) and x is not None:
        # Planned before the transforms, so that AdaRound learns each layer on the grid it will be stored on.
        w4 = plan_w4(floats.tflite, x, keep=precisions)
        precisions = w4.precisions
        notes_in += w4.notes()
        chosen = _with_precisions(chosen, precisions)
    elif w4a8_plan and _w4_wanted(scheme_, eng, asked):
        notes_in.append("w4a8 plan skipped: it measures on --calibration data (--stats has none), so every CONV_2D "
                        "and FULLY_CONNECTED gets 4-bit weights")
    transformed = False
    if names and stats is not None and not explicit:
        # Saved statistics describe the untransformed model; keep them usable.
        notes_in.append(f"default transforms ({', '.join(n.value for n in names)}) skipped: --stats describe "
                        "the untransformed model")
        names = ()
    grid_values: dict[str, np.ndarray] = {}
    measured = floats  # the model whose activations calibration reads
    if names:
        floats, transform_notes, grid_values, kept = _apply_transforms(names, explicit, eng, scheme_, floats, x,
                                                                       progress, precisions)
        notes_in += transform_notes
        transformed = floats.tflite != original.tflite  # a transform that changed nothing needs no check
        # Weights moved only within their 8-bit rounding: one pass over the user's model serves both this
        # plan and the check without the transforms below.
        measured = original if kept else floats
    if scheme_.needs_calibration:
        found, more = calibration_candidates(eng.name.value, eng.calibrates_itself, scheme_, measured.tflite, x,
                                             chosen.observer, stats, progress, overrides,
                                             lambda name: chosen.field(f"tensors.{name}"),
                                             _tensor_bits(scheme_, precisions))
        notes_in += more
        candidates = list(found)
    else:
        if (calibration is not None and not transformed) or stats is not None:
            notes_in.append(f"calibration data not used: scheme {scheme_.value} has float activations and needs "
                            "no ranges")
        if any(overrides.values()):
            notes_in.append(f"per-tensor observers ({sum(1 for o in overrides.values() if o)}) not used: scheme "
                            f"{scheme_.value} has float activations")
    start = time.perf_counter()
    built = _build(eng, floats, scheme_, io_, candidates, precisions, x, progress)
    # Candidates are scored against the user's float model, not a transformed one.
    scoring = _Scoring(original, x) if x is not None else None
    check = transformed and not explicit and x is not None
    if check:
        # A default transform must pay on this model: the same plan without it is built, its observer chosen
        # again (the best ranges differ between the two), and every candidate of both plans competes in one
        # tournament against float (AdaRound at int8 lowered real MobileNetV2: results/transform-guard.md).
        plain_candidates: list[CalibrationInput | None] = [None]
        if scheme_.needs_calibration:
            found, _ = calibration_candidates(eng.name.value, eng.calibrates_itself, scheme_, original.tflite, x,
                                              chosen.observer, None, progress, overrides,
                                              lambda name: chosen.field(f"tensors.{name}"),
                                              _tensor_bits(scheme_, precisions))
            plain_candidates = list(found)
        plain = _build(eng, original, scheme_, io_, plain_candidates, precisions, x, progress)
        listed = ", ".join(n.value for n in names)
        labels = [str(item[0].observer) if item[0] is not None else "with" for item in built] + \
                 [f"{item[0].observer} without {listed}" if item[0] is not None else "without" for item in plain]
        assert scoring is not None
        k, scores = _tournament(built + plain, scoring, progress)
        if len(built) > 1 or len(plain) > 1:  # an observer was chosen here, not given
            notes_in.append(_observer_note(k, scores, labels, scoring.n, rows(x)))
        with_sqnr, with_n = _plan_best(scores[:len(built)], scoring.n)
        without_sqnr, without_n = _plan_best(scores[len(built):], scoring.n)
        calib, tflite, notes, runner = (built + plain)[k]
        kept = k < len(built)
        if not kept:
            floats, transformed, grid_values = original, False, {}
        notes_in.append(f"default transforms ({listed}) {'kept' if kept else 'dropped'}: output SQNR vs float on "
                        f"the calibration samples {with_sqnr:.1f} dB with them, {without_sqnr:.1f} dB without"
                        + (f" (on {with_n} and {without_n} samples)" if with_n != without_n else
                           f" (on {with_n} samples)"))
    elif len(built) > 1:
        assert scoring is not None
        k, scores = _tournament(built, scoring, progress)
        notes_in.append(_observer_note(k, scores, [str(item[0].observer) for item in built], scoring.n, rows(x)))
        calib, tflite, notes, runner = built[k]
    else:
        calib, tflite, notes, runner = built[0]
    seconds = time.perf_counter() - start
    if grid_values:
        _check_grid(tflite, grid_values, eng, notes_in)
    # The plan that ran, reusable as is: the observer "auto" chose, the transforms that were applied, and
    # the sample count used, which is fewer than asked when the data has fewer (so quantizing again with it
    # gives the same bytes).
    ran = dataclasses.replace(
        chosen, scheme=scheme_, engine=eng.name,
        observer=parse_observer(calib.observer) if calib is not None and calib.observer else chosen.observer,
        transforms=tuple(names) if transformed else (), samples=rows(x) if x is not None else chosen.samples)
    path = atomic_write(Path(output), tflite) if output is not None else None
    extra = calib.repairs if calib is not None else ()
    return QuantizedModel(scheme=scheme_, engine=eng.name, io=io_, tflite=tflite, path=path, seconds=seconds,
                          calibration_samples=0 if calib is None else calib.samples,
                          notes=floats.notes + notes + tuple(notes_in) + extra + runner.io_notes(), recipe=ran)


# Schemes whose int8 activations the float-island plan is for.
ISLAND_SCHEMES = (Scheme.INT8, Scheme.W4A8)


def _islands_wanted(wanted: bool | None, scheme: Scheme, eng: Engine, precisions: Mapping[str, Precision],
                    floats: FloatModel) -> bool:
    """Whether to plan float islands: asked for, or (None) an attention model at int8/w4a8 with no precision rule."""
    if wanted is False:
        return False
    able = scheme in ISLAND_SCHEMES and Precision.FLOAT in eng.layer_precisions
    if wanted:
        if not able:
            names = ", ".join(s.value for s in ISLAND_SCHEMES)
            raise UnsupportedError(f"float islands need scheme {names} and engine litert, found scheme "
                                   f"{scheme.value} and engine {eng.name.value}")
        return True
    return able and not precisions and is_attention_model(floats.tflite)


def _w4_wanted(scheme: Scheme, eng: Engine, recipe_precisions: Mapping[str, Precision]) -> bool:
    """Whether to plan which layers of a w4a8 model get 4-bit weights (recipe/w4.py): w4a8 on an engine with
    per-layer int8 and no per-layer precision from the recipe (which then rules); the plan measures on
    calibration data."""
    return scheme is Scheme.W4A8 and Precision.INT8 in eng.layer_precisions and not recipe_precisions


def _with_precisions(chosen: Recipe, precisions: Mapping[str, Precision]) -> Recipe:
    """The recipe with a plan's per-layer precisions as tensor rules: the recipe that ran names every planned
    layer, so reusing it gives the same model without planning again."""
    rules = dict(chosen.tensors)
    for name, p in precisions.items():
        rules[name] = dataclasses.replace(rules.get(name, TensorRule()), precision=p)
    return dataclasses.replace(chosen, tensors=rules)


def _check_engine(eng: Engine, chosen: Recipe, scheme: Scheme, io: IOType,
                  precisions: Mapping[str, Precision]) -> None:
    check_supported(eng, scheme, io)
    if precisions:
        chosen.check_precisions(scheme, eng.name, eng.layer_precisions)


def _tensor_bits(scheme: Scheme, precisions: Mapping[str, Precision]) -> dict[str, int]:
    """Activation bits of the tensors whose op a recipe gives a precision other than the scheme's.

    Their ranges are read at those bits (an observer such as mse clips
    differently for 8 and 16 bits); float ops keep the scheme's bits, since
    their consumer quantizes the tensor again at those.
    """
    base = 16 if scheme is Scheme.INT16X8 else 8
    return {name: p.activation_bits for name, p in precisions.items()
            if p.activation_bits is not None and p.activation_bits != base}


def _apply_transforms(names: Sequence[TransformName], explicit: bool, eng: Engine, scheme: Scheme,
                      floats: FloatModel, x: Inputs | None, progress: Progress,
                      precisions: Mapping[str, Precision]
                      ) -> tuple[FloatModel, list[str], dict[str, np.ndarray], bool]:
    """Run float-graph transforms in their fixed order; the engine then quantizes the edited float model.

    Also returns the integer grid values transforms placed weights on (AdaRound), by weight tensor name, and
    whether every transform kept the activations (TransformResult.activations_kept).
    """
    listed = ", ".join(n.value for n in names)
    if eng.calibrates_itself:
        # TensorFlow's converter rebuilds from the Keras source, so edits to the float .tflite never reach it.
        if explicit:
            raise UnsupportedError(f"--transforms {listed} edit the float .tflite, which engine {eng.name.value} "
                                   "does not use: use --engine litert")
        return floats, [f"transforms ({listed}) do not apply to engine {eng.name.value}"], {}, True
    if x is None:
        if explicit:
            raise InputError(f"--transforms {listed} measure on calibration data: expected --calibration DATA, "
                             "found none")
        return floats, [f"default transforms ({listed}) skipped: they need --calibration data"], {}, True
    notes = []
    grid_values: dict[str, np.ndarray] = {}
    kept = True
    if tuple(names) != ordered(names):
        names = ordered(names)
        notes.append("transforms run in edgequant's fixed order: " + ", ".join(n.value for n in names))
    for i, name in enumerate(names, start=1):
        progress(f"transform {name.value}", i - 1, len(names))
        result = get_transform(name).apply_for(floats.tflite, x, scheme, precisions, progress=progress)
        floats = dataclasses.replace(floats, tflite=result.tflite)
        grid_values.update(result.grid_values)
        kept = kept and result.activations_kept
        notes.append(f"{name.value}: " + ("; ".join(result.changes[:4]) or "no change")
                     + (f" (+{len(result.changes) - 4} more)" if len(result.changes) > 4 else ""))
        progress(f"transform {name.value}", i, len(names))
    return floats, notes, grid_values, kept


def _check_grid(tflite: bytes, grid_values: dict[str, np.ndarray], eng: Engine, notes: list[str]) -> None:
    """AdaRound's learned integers must be what the engine stored, or its work was silently undone."""
    bad = stored_mismatches(tflite, grid_values)
    if bad:
        raise EngineError(f"engine {eng.name.value} stored other weights than the learned rounding for {len(bad)} of "
                          f"{len(grid_values)} tensors (first: {bad[0]}): its weight grid differs from the one "
                          "edgequant assumes; quantize without adaround")
    values = sum(v.size for v in grid_values.values())
    notes.append(f"checked: the engine stored exactly the learned weights ({len(grid_values)} tensors, "
                 f"{values:,} values)")


def _weights_checked(tflite: bytes, floats: FloatModel, scheme: Scheme, eng: Engine) -> str:
    """An engine's output must store what its scheme claims: a scheme with integer or fp16 weights that left
    every weight as it was is a failed step, never a success. Returns the count, as a note."""
    graph, before = read_graph(tflite), read_graph(floats.tflite)
    weighted = [o for o in before.ops if o.op in WEIGHTED_OPS and o.weight_dtype == "float32"]
    wanted = ("float16",) if scheme is Scheme.FP16 else ("int8", "int4", "int16")
    done = [o for o in graph.ops if o.op in WEIGHTED_OPS and o.weight_dtype in wanted]
    stored = sum(n for dtype, n in graph.weight_bytes_by_dtype.items() if dtype in wanted)
    if weighted and not done and stored == 0:
        raise EngineError(f"engine {eng.name.value} claimed scheme {scheme.value} but stored no weight as "
                          f"{' or '.join(wanted)}: 0 of {len(weighted)} weighted ops quantized")
    if scheme in (Scheme.FP16, Scheme.WEIGHT_ONLY_INT8, Scheme.WEIGHT_ONLY_INT4):
        # Their weights reach the ops through DEQUANTIZE, so no op reads them directly: count the bytes instead.
        kinds = [d for d in wanted if graph.weight_bytes_by_dtype.get(d)]
        return f"checked: {stored:,} bytes of weights stored as {'/'.join(kinds) or wanted[0]}"
    return (f"checked: {len(done)} of {len(weighted)} weighted ops store {'/'.join(wanted[:2])} weights"
            if weighted else "checked: the model has no weighted op (conv, dense, matmul)")


def _validated(tflite: bytes, floats: FloatModel, scheme: Scheme, eng: Engine, x: Inputs | None) -> Runner:
    """The engine's output must load and run in LiteRT before we call it a model.

    It runs on a real sample (the first calibration sample) where there is one:
    zeros can be an input no real model sees (an int8 DIV kernel divided by zero on one).
    """
    stray = stray_signature_outputs(tflite, f"{scheme.value}/{eng.name.value} output")
    if stray:
        raise EngineError(f"engine {eng.name.value} wrote a signature whose output {stray[0]} is not a graph output "
                          "(LiteRT would return a reused internal buffer): expected every signature output to be a "
                          "graph output")
    try:
        runner = Runner(tflite, what=f"{scheme.value}/{eng.name.value} output")
        runner.predict({n: v[:1] for n, v in x.items()} if x is not None else runner.zeros())
    except InputError as exc:
        raise EngineError(f"engine {eng.name.value} produced a model LiteRT cannot run: {exc}") from None
    return runner


def _build(eng: Engine, floats: FloatModel, scheme: Scheme, io: IOType, candidates: Sequence[CalibrationInput | None],
           precisions: Mapping[str, Precision], x: Inputs | None, progress: Progress) -> list[tuple]:
    """Each candidate rewritten by the engine, its weights checked, and run once: (calib, tflite, notes, runner)."""
    progress("quantize", 0, len(candidates))
    built = []
    for k, calib in enumerate(candidates, start=1):
        tflite, notes = eng.rewrite(floats, scheme, io, calib, progress, precisions or None)
        notes = notes + (_weights_checked(tflite, floats, scheme, eng),)
        built.append((calib, tflite, notes, _validated(tflite, floats, scheme, eng, x)))
        progress("quantize", k, len(candidates))
    return built


def _score_samples(x: Inputs) -> dict[str, np.ndarray]:
    """SCORE_SAMPLES of the calibration samples, spread evenly (a full pass per candidate cost minutes at 224x224)."""
    n = rows(x)
    index = np.unique(np.linspace(0, n - 1, min(n, SCORE_SAMPLES)).round().astype(int))
    return {k: v[index] for k, v in x.items()}


class _Scoring:
    """Quantized models scored against float on the scoring samples; every model runs on each sample once.

    ``quantize`` scores observer candidates, then (with default transforms) the
    winner against the plan without them: the float reference and the winner's
    outputs are reused rather than run again (int16x8 kernels run several times
    slower than float's).
    """

    def __init__(self, floats: FloatModel, x: Inputs) -> None:
        chosen = _score_samples(x)
        self.n = rows(chosen)
        # Ordered so that every prefix is spread over the samples too (the screening reads a prefix).
        step = max(1, -(-self.n // SCREEN_SAMPLES))
        order = np.concatenate([np.arange(start, self.n, step) for start in range(step)])
        self.x = {name: v[order] for name, v in chosen.items()}
        self._floats = floats
        self._reference: dict[str, np.ndarray] | None = None
        self._outputs: dict[int, tuple[Runner, int, dict[str, np.ndarray]]] = {}

    def sqnr(self, runner: Runner, k: int | None = None) -> float:
        """SQNR vs float of ``runner`` on ``k`` of the scoring samples (all by default): the mean over the
        model's outputs, in dB."""
        k = self.n if k is None else min(k, self.n)
        if self._reference is None:
            self._reference = Runner(self._floats.tflite).predict(self.x)
        _, have, out = self._outputs.get(id(runner), (runner, 0, {}))
        if have < k:
            more = runner.predict({name: v[have:k] for name, v in self.x.items()})
            out = {name: np.concatenate([out[name], v]) if have else v for name, v in more.items()}
            self._outputs[id(runner)] = (runner, k, out)  # the runner is held so that its id stays its own
        reference = {name: v[:k] for name, v in self._reference.items()}
        by_output = fidelity_by_output({name: v[:k] for name, v in out.items()}, reference)
        # Every output counts, not only the worst: BlazeFace's score logits reach -521 on anchors with no face,
        # so their SQNR measures those, and scored by it alone the tournament dropped AdaRound at w4a8, which
        # the box output needed. An output float reproduces exactly counts as EXACT_DB, not infinity.
        return float(np.mean([min(f.sqnr_db, EXACT_DB) for f in by_output.values()]))


# An output SQNR this high is float32 rounding: the tournament's mean counts an exact output as this.
EXACT_DB = 120.0


# With more than two observer candidates, all are scored on a few (evenly spread) of the scoring samples and
# the best two on all of them: scoring ran every candidate on every sample before, which at int16x8
# (LiteRT's reference kernels) was most of quantize's time.
SCREEN_SAMPLES = 8
FINALISTS = 2


def _tournament(built: list, scoring: _Scoring, progress: Progress = no_progress
                ) -> tuple[int, list[tuple[float, int]]]:
    """The candidate whose outputs match float best (_Scoring.sqnr) on the scoring samples, and every
    candidate's (SQNR, samples it was scored on). With more than FINALISTS candidates, all are screened on
    SCREEN_SAMPLES samples and the best FINALISTS scored on all of them; ties go to the earlier candidate."""
    screen = len(built) > FINALISTS and scoring.n > SCREEN_SAMPLES
    progress("score observers", 0, len(built))
    scores: dict[int, tuple[float, int]] = {}
    if screen:
        scores = {k: (scoring.sqnr(item[3], SCREEN_SAMPLES), min(SCREEN_SAMPLES, scoring.n))
                  for k, item in enumerate(built)}
        finalists = sorted(sorted(scores, key=lambda k: (-scores[k][0], k))[:FINALISTS])
    else:
        finalists = list(range(len(built)))
    for done, k in enumerate(finalists, start=1):
        scores[k] = (scoring.sqnr(built[k][3]), scoring.n)
        progress("score observers", len(built) - len(finalists) + done, len(built))
    best = max(finalists, key=lambda k: (scores[k][0], -k))
    return best, [scores[k] for k in range(len(built))]


def _plan_best(scores: list[tuple[float, int]], n: int) -> tuple[float, int]:
    """One plan's best (SQNR, samples): its finalist's score on all ``n`` scoring samples when it has one, since
    scores on the screening samples alone are not comparable to those."""
    return max((s for s in scores if s[1] == n), default=max(scores))


def _observer_note(best: int, scores: list[tuple[float, int]], labels: list[str], n: int, of: int) -> str:
    """The tournament in one note: the finalists' scores on all ``n`` scoring samples, the others' on the few
    they were screened on."""
    finals = [f"{labels[k]} {sqnr:.1f} dB" for k, (sqnr, used) in enumerate(scores) if used == n]
    screened = [(sqnr, k, used) for k, (sqnr, used) in enumerate(scores) if used != n]
    dropped = ", ".join(f"{labels[k]} {sqnr:.1f} dB" for sqnr, k, _ in sorted(screened, key=lambda s: (-s[0], s[1])))
    return (f"observer auto-selected: {labels[best]} (output SQNR vs float on {n} of {of} calibration samples: "
            + ", ".join(finals) + (f"; screened out on {screened[0][2]} of them: {dropped}" if screened else "") + ")")


def calibrate(model: FloatModel | str | Path, data: DataLike, samples: int | None = None,
              output: str | Path | None = None, unsafe: bool = False, resize: tuple[int, int] | None = None,
              normalize: tuple[float, float] | None = None, progress: Progress = no_progress, *,
              signature: str | None = None) -> CalibrationStats:
    """Gather activation statistics of the float model in LiteRT; reusable with ``quantize(stats=...)``."""
    check_samples(samples)
    floats = resolve_model(model, unsafe, signature)
    x = select_samples(load_checked_data(data, floats, resize, normalize),
                       samples if samples is not None else DEFAULT_SAMPLES).inputs
    stats = collect_stats(floats.tflite, x, progress=progress)
    if output is not None:
        stats.save(Path(output))
    return stats


def run(model: str | Path | bytes, x: DataLike, *, signature: str | None = None) -> RunResult:
    """One inference in LiteRT; integer I/O is converted from and to float with the model's own parameters.

    ``x`` is named inputs (a .npz of one array per input name, a mapping), or
    one array for a one-input model. The result holds every output by name.
    """
    tflite = model if isinstance(model, bytes) else read_tflite(Path(model))
    runner = Runner(tflite, what=str(model) if not isinstance(model, bytes) else "model", signature=signature)
    ds = check_data_for(x, tflite, runner.signature)
    return RunResult(outputs=runner.predict(ds.inputs), input_dtype=runner.input_dtype,
                     output_dtype=runner.output_dtype, notes=runner.io_notes())


def read_tflite(path: Path) -> bytes:
    """The bytes of a user's .tflite file, or an InputError saying what was expected."""
    if not path.exists():
        raise InputError(f"model not found: {path} (expected a .tflite file)")
    if path.is_dir() or path.suffix.lower() != ".tflite":
        raise InputError(f"expected a .tflite file, found {path.name}")
    data = path.read_bytes()
    if not data:
        raise InputError(f"expected a .tflite flatbuffer in {path}, found an empty file")
    return data


def evaluate(model: str | Path | bytes, data: DataLike | None = None, reference: FloatModel | str | Path | None = None,
             threads: int = 1, runs: int = 50, warmup: int = 5, resize: tuple[int, int] | None = None,
             normalize: tuple[float, float] | None = None, unsafe: bool = False,
             progress: Progress = no_progress, *, signature: str | None = None,
             output: str | None = None) -> Evaluation:
    """Size, top-1 (with labels, read from ``output``), fidelity of every output to ``reference`` and batch-1
    latency of one .tflite model."""
    check_measurement_options(threads, runs)
    tflite = model if isinstance(model, bytes) else read_tflite(Path(model))
    runner = Runner(tflite, threads=threads, what=str(model) if not isinstance(model, bytes) else "model",
                    signature=signature)
    label, _ = label_output(runner.signature, output)  # an unknown --output fails before any work
    ds = check_data_for(data, tflite, runner.signature, resize, normalize) if data is not None else None
    if ds is not None:  # before any inference: a label the output cannot predict makes top-1 meaningless
        check_labels(ds.y, classes_of(runner.signature.output(label).shape), ds.source)
    ref_out = None
    if reference is not None:
        if ds is None:
            raise InputError("--reference compares outputs on data: expected --data DATA, found none")
        ref_model = resolve_model(reference, unsafe, signature)
        ref_out = Runner(ref_model.tflite, threads=threads, what="reference").predict(ds.inputs)
    sample = ds.inputs if ds is not None else runner.zeros()
    result = evaluate_runners([runner], ds, ref_out, runs, warmup, progress, sample=sample, output=output)[0]
    path = None if isinstance(model, bytes) else Path(model)
    return dataclasses.replace(result, path=path)


def supported_pairs(schemes: Sequence[Scheme], engines: Sequence[EngineName]) -> list[tuple[Scheme, EngineName]]:
    return [(s, e) for s in schemes for e in engines if s in ENGINES[e].schemes]
