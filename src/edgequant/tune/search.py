"""The search: from the most compressed candidates toward the budget, one measured trial at a time.

    scheme -> observer -> algorithm -> engine -> layer -> tighten

1. scheme: every allowed whole-model scheme on the litert engine: fp16
   first (float compute: a model within budget before any limit can stop
   the search), then w4a8, weight-only-int4, int8, dynamic,
   weight-only-int8, int16x8.
2. If the starting scheme (space.start_scheme) misses the budget: the other
   observers, then the post-training algorithms, each kept only if it raises
   the metric; then TensorFlow's converter for int8 (Keras or SavedModel source).
3. layer: the layers ranked by sensitivity (analyze.layer_sensitivity on the
   starting model), most sensitive first; each gets the next precision up its
   ladder (space.ladder), and the change is kept only if the metric rises
   (output SQNR breaks accuracy ties); else it steps back and tries the next
   precision, then the next layer. Rounds repeat until the budget is met or
   no change helps.
4. tighten: once the budget is met, every fallback is undone one step at a
   time, least sensitive layer first, where the budget still holds; then
   8-bit layers are tried at 4-bit weights (not for the latency objective).

Decisions depend on the measured metric only (the objective picks the best
trial at the end, and judges tighten steps), so a search over the same data
takes the same path. The history replays it: a trial already measured is
read back, not rebuilt, which is how ``--resume`` continues an interrupted run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from edgequant.recipe import Recipe
from edgequant.tune.pareto import NOISE, quality
from edgequant.tune.records import Objective, RankedLayer, Trial
from edgequant.tune.space import (ALGORITHMS, STATIC, below, ladder, observer_choices, options, scheme_precision,
                                  start_scheme, uniform_recipes, with_precision)
from edgequant.types import Precision, Scheme

__all__ = ["Search", "Session", "StopSearch"]


class StopSearch(Exception):
    """A limit was reached (time or trials); ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Session(Protocol):
    """What the search needs from the run: measured trials, the ranking, and facts about the model."""

    # Every op output tensor of the float model -> its builtin op type.
    layer_ops: dict[str, str]
    # Precision -> the op types litert-quantizer allows it for (None: any op).
    able: dict[Precision, frozenset[str] | None]

    def trial(self, recipe: Recipe, stage: str, move: str, parent: int | None = None,
              layer: dict[str, str] | None = None) -> Trial:
        """The trial of ``recipe``: from the history if measured before, else built and measured now."""
        ...

    def rank(self, base: Trial) -> list[RankedLayer]:
        """The layers of ``base``'s model, most sensitive first."""
        ...

    def decide(self, trial: Trial, kept: bool) -> None:
        """Record whether the search kept the change ``trial`` made (its ``accepted`` field)."""
        ...

    def converter(self, scheme: Scheme) -> Recipe | None:
        """TensorFlow's converter recipe for ``scheme``, when the model's source allows it."""
        ...


def _better(new: Trial, old: Trial) -> bool:
    return new.ok and quality(new) > quality(old)


def _short(tensor: str) -> str:
    # TFLite joins fused op names with ";": the first part names the layer well enough for a line of output.
    first = tensor.split(";")[0]
    return first if len(first) <= 60 else "..." + first[-57:]


class Search:
    """One search over a session; :meth:`run` returns why it stopped."""

    def __init__(self, session: Session, objective: Objective, schemes: Sequence[Scheme], samples: int) -> None:
        self.s = session
        self.objective = objective
        self.schemes = tuple(schemes)
        self.samples = samples
        self.steps = ladder(objective)
        self.ranking: list[RankedLayer] | None = None

    def run(self) -> str:
        try:
            self._run()
        except StopSearch as stop:
            return stop.reason
        return "search finished"

    # --------------------------------------------------------------------------- stages

    def _run(self) -> None:
        uniform: dict[Scheme, Trial] = {}
        for recipe in uniform_recipes(self.schemes, self.samples):
            scheme = recipe.require_scheme()
            how = f"observer {recipe.to_dict()['observer']}, " if scheme in STATIC else ""
            uniform[scheme] = self.s.trial(recipe, "scheme", f"{scheme.value} (litert, {how}no transforms)")
        start = start_scheme({s: t.ok and t.meets_budget for s, t in uniform.items() if s in STATIC},
                             self.schemes, self.objective)
        if start is not None and uniform[start].ok and not uniform[start].meets_budget:
            current = self._observers(uniform[start])
            current = self._algorithms(current)
            if not current.meets_budget and start is Scheme.INT8:
                engine = self.s.converter(Scheme.INT8)
                if engine is not None and self.s.trial(engine, "engine", "int8 (tflite-converter: its own min-max "
                                                                         "calibration)").meets_budget:
                    # Within budget where litert's int8 is not: litert fallbacks could only add size, and the
                    # converter takes no per-layer precision, so the layer stages have nothing to offer.
                    return
            if not current.meets_budget:
                current = self._layers(current, start)
            if current.meets_budget:
                self._tighten(current, start)

    def _keep_if_better(self, new: Trial, current: Trial) -> Trial:
        kept = _better(new, current)
        self.s.decide(new, kept)
        return new if kept else current

    def _observers(self, base: Trial) -> Trial:
        """The other observers on the starting scheme; the best by metric is kept, if it beats ``base``."""
        recipe = Recipe.from_dict(base.recipe, "tune")
        best = base
        for obs in observer_choices(recipe.observer):
            t = self.s.trial(_replace(recipe, observer=obs), "observer", f"{recipe.require_scheme().value}, observer "
                             f"{obs}", parent=base.id)
            best = self._keep_if_better(t, best)
        return best

    def _algorithms(self, base: Trial) -> Trial:
        recipe = Recipe.from_dict(base.recipe, "tune")
        best = base
        for names in ALGORITHMS:
            listed = ", ".join(n.value for n in names)
            t = self.s.trial(_replace(recipe, transforms=names), "algorithm",
                             f"{recipe.require_scheme().value}, observer {recipe.to_dict()['observer']}, {listed}",
                             parent=base.id)
            best = self._keep_if_better(t, best)
        return best

    def _floor(self, scheme: Scheme, tensor: str) -> Precision:
        w4 = self.s.able.get(Precision.W4A8) or frozenset()
        return scheme_precision(scheme, self.s.layer_ops.get(tensor, ""), w4)

    def _now(self, recipe: Recipe, scheme: Scheme, tensor: str) -> Precision:
        rule = recipe.tensors.get(tensor)
        return rule.precision if rule is not None and rule.precision is not None else self._floor(scheme, tensor)

    def _layer_trial(self, current: Trial, recipe: Recipe, layer: RankedLayer, now: Precision, to: Precision,
                     scheme: Scheme, stage: str) -> Trial:
        new = with_precision(recipe, layer.tensor, None if to is self._floor(scheme, layer.tensor) else to)
        return self.s.trial(new, stage, f"{layer.op} {_short(layer.tensor)}: {now.value} -> {to.value}",
                            parent=current.id, layer={"tensor": layer.tensor, "op": layer.op, "from": now.value,
                                                      "to": to.value})

    def _layers(self, base: Trial, scheme: Scheme) -> Trial:
        """Fall back the most sensitive layers first, keeping a change only when the metric rises."""
        ranking = self.ranking = self.s.rank(base)
        current = base
        changed = True
        while changed and not current.meets_budget:
            changed = False
            for layer in ranking:
                if current.meets_budget:
                    break
                recipe = Recipe.from_dict(current.recipe, "tune")
                now = self._now(recipe, scheme, layer.tensor)
                for to in options(now, self.steps, self.s.able, layer.op, self.schemes):
                    t = self._layer_trial(current, recipe, layer, now, to, scheme, "layer")
                    kept = self._keep_if_better(t, current)
                    if kept is t:
                        current, changed = t, True
                        break
        return current

    def _tighten(self, current: Trial, scheme: Scheme) -> Trial:
        """Undo fallbacks the budget does not need, then compress further, while the budget holds."""
        w4 = self.s.able.get(Precision.W4A8) or frozenset()
        recipe = Recipe.from_dict(current.recipe, "tune")
        raised = any(self._now(recipe, scheme, t) is not self._floor(scheme, t) for t in recipe.precisions())
        compress = Scheme.W4A8 in self.schemes and self.objective is not Objective.LATENCY and any(
            op in w4 and self._now(recipe, scheme, t) is Precision.INT8 for t, op in self.s.layer_ops.items())
        if not raised and not compress:
            return current
        if self.ranking is None:  # the budget was met before any layer moved: rank the model that met it
            self.ranking = self.s.rank(current)
        start = current
        order = list(reversed(self.ranking))  # least sensitive first
        changed = True
        while changed:
            changed = False
            for layer in order:
                recipe = Recipe.from_dict(current.recipe, "tune")
                now = self._now(recipe, scheme, layer.tensor)
                down = below(now, self._floor(scheme, layer.tensor), self.steps, self.s.able, layer.op, self.schemes)
                if down is None:
                    continue
                t = self._layer_trial(current, recipe, layer, now, down, scheme, "tighten")
                kept = self._keeps(t, current, start)
                self.s.decide(t, kept)
                if kept:
                    current, changed = t, True
        if compress:
            for layer in order:
                recipe = Recipe.from_dict(current.recipe, "tune")
                now = self._now(recipe, scheme, layer.tensor)
                if now is not Precision.INT8 or layer.op not in w4:
                    continue
                t = self._layer_trial(current, recipe, layer, now, Precision.W4A8, scheme, "tighten")
                kept = self._keeps(t, current, start)
                self.s.decide(t, kept)
                if kept:
                    current = t
        return current

    def _keeps(self, new: Trial, current: Trial, start: Trial) -> bool:
        """A tighten step stays if the budget still holds, the file is no larger, and (unless the objective
        is size) latency stays within measurement noise of where tightening started.

        Judged against the start, not the last step: steps each within noise
        must not add up to a slower model.
        """
        if not (new.ok and new.meets_budget) or (new.size_bytes or 0) > (current.size_bytes or 0):
            return False
        if self.objective is Objective.SIZE or new.latency_ratio is None or start.latency_ratio is None:
            return True
        return new.latency_ratio <= start.latency_ratio * NOISE


def _replace(recipe: Recipe, **changes: object) -> Recipe:
    import dataclasses

    return dataclasses.replace(recipe, **changes)  # type: ignore[arg-type]
