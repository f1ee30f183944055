"""Stage: plan. The quantization plan as versioned, validated data (a recipe file).

    recipe.json -> load_recipe -> Recipe -> plan(recipe, keyword overrides) -> the Recipe quantize runs

A recipe says what to do, never what to do it on: scheme, engine, model I/O,
observer (for the whole model and per tensor name), per-layer precision
(version 2), float-graph transforms and the calibration sample count. Data
paths and saved statistics stay arguments. The schema is documented in
docs/recipe.md.

Everything in a file is checked before any model work, and each error is one
line naming the file and the field path. Only a per-tensor name can be
checked later: whether the model has that tensor is known once calibration
statistics exist (see calibrate.compute_ranges).

``Recipe`` lives here rather than in types.py, as CalibrationStats lives in
calibrate/: the dataclass and the validation that builds it are one schema and
change together. types.py names it only for type checking, so
``QuantizedModel.recipe`` can carry it without an import cycle.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgequant._util import atomic_dir_file
from edgequant.calibrate.observers import Observer, ObserverName, parse_observer
from edgequant.errors import EdgequantError, InputError, UnsupportedError
from edgequant.transforms import TransformName
from edgequant.types import EngineName, IOType, Precision, Scheme, parse_enum

__all__ = ["Recipe", "TensorRule", "load_recipe", "plan", "parse_transforms", "parse_observer_choice",
           "RECIPE_VERSION", "READ_VERSIONS", "AUTO", "DEFAULT", "STATIC_SCHEMES"]

# The newest version this edgequant reads, and every version it reads. A file
# keeps the meaning of the version it names; a saved recipe names the lowest
# version that holds it, so files without per-layer precision stay readable by
# an edgequant that only knows version 1.
RECIPE_VERSION = 2
READ_VERSIONS = (1, 2)
# "auto": edgequant picks the observer per model (calibrate.AUTO_CANDIDATES).
AUTO = "auto"
# "default": the per-scheme transforms of pipeline.DEFAULT_TRANSFORMS.
DEFAULT = "default"

# Per-tensor fields by version: version 2 adds per-layer precision; every
# version 1 file keeps its meaning.
_TENSOR_FIELDS = {1: ("observer",), 2: ("observer", "precision")}
_TOP_FIELDS = ("version", "scheme", "engine", "io", "observer", "transforms", "samples", "tensors")
# Schemes with integer activations: the only ones a layer can be given integer precision in
# (a layer's int8 or int16 activations need ranges, which these schemes calibrate).
STATIC_SCHEMES = (Scheme.INT8, Scheme.INT16X8, Scheme.W4A8)


def _observer_text(obs: Observer | None) -> str:
    """An observer as the recipe writes it; exact, so a saved recipe reproduces its ranges."""
    if obs is None:
        return AUTO
    if obs.param is None:
        return obs.name.value
    # str(Observer) rounds to 6 digits; keep the exact float when that would change it.
    short = f"{obs.param:g}"
    return f"{obs.name.value}:{short if float(short) == obs.param else repr(obs.param)}"


def _observer_names(auto: bool) -> str:
    names = [f"{n.value}:P" if n is ObserverName.PERCENTILE else n.value for n in ObserverName]
    if auto:
        names.append(AUTO)
    return ", ".join(names[:-1]) + " or " + names[-1]


def parse_observer_choice(text: str | Observer) -> Observer | None:
    """An observer, or None for "auto" (edgequant's per-model choice)."""
    return None if text == AUTO else parse_observer(text)


def parse_transforms(value: Sequence[str] | str) -> tuple[TransformName, ...]:
    """'cle,bias-correction' or a list of names; 'none' or empty for no transform."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    items = [i for i in items if i and i != "none"]
    return tuple(parse_enum(TransformName, i, "transform") for i in items)


def _transforms_text(names: tuple[TransformName, ...] | None) -> str:
    return DEFAULT if names is None else (",".join(n.value for n in names) or "none")


def _value_text(key: str, value: Any) -> str:
    """A recipe value as the command line spells it, for notes."""
    if key == "observer":
        return _observer_text(value)
    if key == "transforms":
        return _transforms_text(value)
    return str(getattr(value, "value", value))


@dataclasses.dataclass(frozen=True)
class TensorRule:
    """What the recipe says about one activation tensor and the op that writes it.

    ``observer`` None follows the recipe's observer; ``precision`` None leaves
    the op at the scheme's precision (version 2).
    """

    observer: Observer | None = None
    precision: Precision | None = None

    def to_dict(self) -> dict[str, Any]:
        # A precision rule leaves out the observer it does not set; a version 1 rule always names its observer.
        out: dict[str, Any] = {}
        if self.observer is not None or self.precision is None:
            out["observer"] = _observer_text(self.observer)
        if self.precision is not None:
            out["precision"] = self.precision.value
        return out


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The quantization plan. Build one from plain data with :meth:`from_dict` (validated).

    ``scheme`` None leaves the choice to ``quantize(scheme=...)``; ``observer``
    None is "auto"; ``transforms`` None is "default" (per scheme); ``samples``
    None is edgequant's default (200).
    """

    version: int = 1
    scheme: Scheme | None = None
    engine: EngineName = EngineName.AUTO
    io: IOType = IOType.FLOAT
    observer: Observer | None = None
    transforms: tuple[TransformName, ...] | None = None
    samples: int | None = None
    tensors: Mapping[str, TensorRule] = dataclasses.field(default_factory=dict)
    # Where the recipe came from, for error messages only: a file name, "recipe" for data, "" for none.
    source: str = dataclasses.field(default="recipe", compare=False, repr=False)

    def __post_init__(self) -> None:
        # A read-only view, so a frozen Recipe cannot change under a caller that holds it.
        object.__setattr__(self, "tensors", types.MappingProxyType(dict(self.tensors)))

    def __hash__(self) -> int:
        # The generated hash would fail on the mapping; a tuner wants recipes in sets and dict keys.
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def field(self, path: str) -> str:
        """The prefix of an error about ``path`` in this recipe, e.g. 'recipe.json: field "observer"'."""
        return f'{self.source}: field "{path}"'

    def require_scheme(self) -> Scheme:
        if self.scheme is None:
            if not self.source:  # no recipe was given
                raise InputError("no scheme: expected --scheme SCHEME (or --recipe FILE with a \"scheme\" field), "
                                 "found none")
            raise InputError(f"no scheme: expected --scheme SCHEME or a \"scheme\" field in {self.source}, "
                             "found neither")
        return self.scheme

    def tensor_observers(self) -> dict[str, Observer | None]:
        """Every tensor the recipe names, with its observer (None: it follows the recipe's observer).

        Names with no override of their own are kept so that a misspelt name
        is still refused once calibration statistics show the real ones.
        """
        return {name: rule.observer for name, rule in self.tensors.items()}

    def precisions(self) -> dict[str, Precision]:
        """The per-layer precision rules, by the name of the tensor the op writes."""
        return {name: rule.precision for name, rule in self.tensors.items() if rule.precision is not None}

    def check_precisions(self, scheme: Scheme, engine: EngineName, engine_precisions: frozenset[Precision]) -> None:
        """Refuse a per-layer precision the scheme or engine cannot give, naming the field.

        Whether the op writing the tensor can take that precision is known with
        the model only; the engine checks that (engines/litert.py).
        """
        for name, precision in self.precisions().items():
            where = self.field(f"tensors.{name}.precision")
            if not engine_precisions:
                raise UnsupportedError(f"{where}: engine {engine.value} cannot set per-layer precision (it "
                                       "quantizes the whole model with one scheme): use engine litert")
            if precision not in engine_precisions:
                able = ", ".join(p.value for p in engine_precisions)
                raise UnsupportedError(f"{where}: engine {engine.value} cannot set per-layer precision "
                                       f"{precision.value} (it can set {able})")
            if precision is not Precision.FLOAT and scheme not in STATIC_SCHEMES:
                names = ", ".join(s.value for s in STATIC_SCHEMES)
                raise UnsupportedError(f"{where}: precision {precision.value} needs a scheme with integer "
                                       f"activations ({names}), found scheme {scheme.value}; only \"float\" "
                                       "applies to every scheme")

    @property
    def needed_version(self) -> int:
        """The lowest recipe version that holds this recipe: 2 with per-layer precision, else 1."""
        return 2 if self.precisions() else 1

    def summary(self) -> str:
        parts = [f"scheme {self.scheme.value if self.scheme else 'unset'}", f"engine {self.engine.value}",
                 f"io {self.io.value}", f"observer {_observer_text(self.observer)}",
                 f"transforms {_transforms_text(self.transforms)}"]
        if self.samples is not None:
            parts.append(f"{self.samples} samples")
        if self.tensors:
            parts.append(f"{len(self.tensors)} per-tensor rule{'s' if len(self.tensors) != 1 else ''}")
        counts: dict[str, int] = {}
        for precision in self.precisions().values():
            counts[precision.value] = counts.get(precision.value, 0) + 1
        if counts:
            parts.append("per-layer precision " + ", ".join(f"{n} {p}" for p, n in sorted(counts.items())))
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": max(self.version, self.needed_version)}
        if self.scheme is not None:
            out["scheme"] = self.scheme.value
        out.update(engine=self.engine.value, io=self.io.value, observer=_observer_text(self.observer),
                   transforms=DEFAULT if self.transforms is None else [n.value for n in self.transforms])
        if self.samples is not None:
            out["samples"] = self.samples
        out["tensors"] = {name: rule.to_dict() for name, rule in self.tensors.items()}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | Path) -> Path:
        return atomic_dir_file(Path(path), self.to_json())

    @classmethod
    def from_dict(cls, data: Any, where: str = "recipe") -> Recipe:
        """Validate plain data (parsed JSON) field by field; the first problem is one InputError."""
        return _Reader(where).recipe(data)


class _Reader:
    """Validation of one recipe's data; every message names ``where`` and the field path."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, expected: str, value: Any, error: type[InputError] = InputError) -> EdgequantError:
        return error(f'{self.where}: field "{path}": expected {expected}, found {_show(value)}')

    def fields(self, data: Any, path: str, allowed: Sequence[str], later: Sequence[str] = ()) -> dict[str, Any]:
        """``data`` as an object with only ``allowed`` keys; ``later`` are fields of a newer version."""
        if not isinstance(data, dict):
            if not path:
                raise InputError(f"{self.where}: expected a JSON object, found {_show(data)}")
            raise self.fail(path, f"an object with fields {', '.join(allowed)}", data)
        for key in data:
            if key not in allowed:
                at = f"{path}.{key}" if path else key
                one_of = "one of " if len(allowed) > 1 else ""
                newer = f' (field "{key}" needs "version": {RECIPE_VERSION})' if key in later else ""
                raise InputError(f'{self.where}: field "{at}": unknown field; expected {one_of}{", ".join(allowed)}'
                                 f"{newer}")
        return data

    def enum(self, data: dict[str, Any], key: str, enum_type: type, default: Any) -> Any:
        if key not in data:
            return default
        names = [m.value for m in enum_type]
        value = data[key]
        if not isinstance(value, str) or value not in names:
            raise self.fail(key, "one of " + ", ".join(names), value,
                            UnsupportedError if isinstance(value, str) else InputError)
        return enum_type(value)

    def observer(self, value: Any, path: str) -> Observer | None:
        expected = f"an observer ({_observer_names(auto=True)})"
        if not isinstance(value, str):
            raise self.fail(path, expected, value)
        try:
            return parse_observer_choice(value)
        except UnsupportedError as exc:
            detail = "" if value.partition(":")[0] not in [n.value for n in ObserverName] else f" ({exc})"
            raise UnsupportedError(f'{self.where}: field "{path}": expected {expected}, found {_show(value)}'
                                   f"{detail}") from None

    def precision(self, value: Any, path: str) -> Precision:
        names = [p.value for p in Precision]
        if not isinstance(value, str) or value not in names:
            raise self.fail(path, "a precision (" + ", ".join(names[:-1]) + f" or {names[-1]})", value,
                            UnsupportedError if isinstance(value, str) else InputError)
        return Precision(value)

    def transforms(self, value: Any) -> tuple[TransformName, ...] | None:
        names = ", ".join(t.value for t in TransformName)
        if value == DEFAULT:
            return None
        if not isinstance(value, list):
            raise self.fail("transforms", f'"{DEFAULT}" or a list of transform names ({names})', value)
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or item not in [t.value for t in TransformName]:
                raise self.fail(f"transforms[{i}]", f"a transform ({names})", item,
                                UnsupportedError if isinstance(item, str) else InputError)
            out.append(TransformName(item))
        return tuple(out)

    def recipe(self, data: Any) -> Recipe:
        data = self.fields(data, "", _TOP_FIELDS)
        if "version" not in data:
            raise InputError(f'{self.where}: field "version" is missing: expected {RECIPE_VERSION}')
        version = data["version"]
        if not _is_int(version) or version not in READ_VERSIONS:
            listed = " or ".join(str(v) for v in READ_VERSIONS)
            raise self.fail("version", f"{listed} (the recipe versions this edgequant reads)", version)
        samples = data.get("samples")
        if samples is not None and (not _is_int(samples) or samples < 1):
            raise self.fail("samples", "a positive integer", samples)
        tensors = data.get("tensors", {})
        if not isinstance(tensors, dict):
            raise self.fail("tensors", "an object mapping tensor names to rules", tensors)
        rules = {}
        for name, rule in tensors.items():
            if not name:
                raise InputError(f'{self.where}: field "tensors": expected tensor names, found an empty name')
            later = tuple(f for f in _TENSOR_FIELDS[RECIPE_VERSION] if f not in _TENSOR_FIELDS[version])
            rule = self.fields(rule, f"tensors.{name}", _TENSOR_FIELDS[version], later)
            precision = self.precision(rule["precision"], f"tensors.{name}.precision") if "precision" in rule \
                else None
            rules[name] = TensorRule(observer=self.observer(rule.get("observer", AUTO), f"tensors.{name}.observer"),
                                     precision=precision)
        return Recipe(version=version, scheme=self.enum(data, "scheme", Scheme, None),
                      engine=self.enum(data, "engine", EngineName, EngineName.AUTO),
                      io=self.enum(data, "io", IOType, IOType.FLOAT),
                      observer=self.observer(data.get("observer", AUTO), "observer"),
                      transforms=self.transforms(data.get("transforms", DEFAULT)),
                      samples=samples, tensors=rules, source=self.where)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not 1


def _show(value: Any) -> str:
    """A found value for a one-line message: scalars as JSON, containers by kind."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + '..."'


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; every problem is one InputError naming the file and field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"recipe not found: {path} (expected a recipe JSON file, see docs/recipe.md)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path.name}: expected a JSON recipe, found: {exc}") from None
    return Recipe.from_dict(data, path.name)


def plan(recipe: Recipe | Mapping[str, Any] | str | Path | None, *, scheme: Scheme | str | None = None,
         engine: EngineName | str | None = None, io: IOType | str | None = None,
         observer: Observer | str | None = None, transforms: Sequence[str] | str | None = None,
         samples: int | None = None) -> tuple[Recipe, list[str]]:
    """The recipe to run: ``recipe`` with every given keyword taking precedence, and a note per override.

    Keywords use the command's spelling: observer "auto" and transforms
    "default" are explicit choices that override a recipe; None means not given.
    """
    if recipe is None:
        base = Recipe(source="")
    elif isinstance(recipe, Recipe):
        base = recipe
    elif isinstance(recipe, Mapping):
        base = Recipe.from_dict(dict(recipe))
    else:
        base = load_recipe(recipe)
    given: dict[str, Any] = {}
    if scheme is not None:
        given["scheme"] = parse_enum(Scheme, scheme, "scheme")
    if engine is not None:
        given["engine"] = parse_enum(EngineName, engine, "engine")
    if io is not None:
        given["io"] = parse_enum(IOType, io, "I/O type")
    if observer is not None:
        given["observer"] = parse_observer_choice(observer)
    if transforms is not None:
        given["transforms"] = None if transforms == DEFAULT else parse_transforms(transforms)
    if samples is not None:
        given["samples"] = samples
    notes = []
    if recipe is not None:
        for key, value in given.items():
            before = getattr(base, key)
            # A scheme or sample count the recipe left unset is filled in, not overridden.
            if before != value and not (before is None and key in ("scheme", "samples")):
                notes.append(f"recipe {key} {_value_text(key, before)} overridden by --{key} "
                             f"{_value_text(key, value)}")
    return dataclasses.replace(base, **given), notes
