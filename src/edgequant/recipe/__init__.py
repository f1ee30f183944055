"""Stage: plan. The quantization plan as versioned, validated data (a recipe file).

    recipe.json -> load_recipe -> Recipe -> plan(recipe, keyword overrides) -> the Recipe quantize runs

A recipe says what to do, never what to do it on: scheme, engine, model I/O,
observer (for the whole model and per tensor name), float-graph transforms
and the calibration sample count. Data paths and saved statistics stay
arguments. The schema is documented in docs/recipe.md.

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
from edgequant.types import EngineName, IOType, Scheme, parse_enum

__all__ = ["Recipe", "TensorRule", "load_recipe", "plan", "parse_transforms", "parse_observer_choice",
           "RECIPE_VERSION", "AUTO", "DEFAULT"]

RECIPE_VERSION = 1
# "auto": edgequant picks the observer per model (calibrate.AUTO_CANDIDATES).
AUTO = "auto"
# "default": the per-scheme transforms of pipeline.DEFAULT_TRANSFORMS.
DEFAULT = "default"

# Per-tensor fields version 1 reads. Per-layer precision (keep in float,
# activation and weight bits) will be more optional fields of TensorRule: a file
# using them says version 2, and every version 1 file keeps its meaning.
_TENSOR_FIELDS = ("observer",)
_TOP_FIELDS = ("version", "scheme", "engine", "io", "observer", "transforms", "samples", "tensors")


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
    """What the recipe says about one activation tensor. ``observer`` None follows the recipe's observer."""

    observer: Observer | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"observer": _observer_text(self.observer)}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The quantization plan. Build one from plain data with :meth:`from_dict` (validated).

    ``scheme`` None leaves the choice to ``quantize(scheme=...)``; ``observer``
    None is "auto"; ``transforms`` None is "default" (per scheme); ``samples``
    None is edgequant's default (200).
    """

    version: int = RECIPE_VERSION
    scheme: Scheme | None = None
    engine: EngineName = EngineName.LITERT
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

    def summary(self) -> str:
        parts = [f"scheme {self.scheme.value if self.scheme else 'unset'}", f"engine {self.engine.value}",
                 f"io {self.io.value}", f"observer {_observer_text(self.observer)}",
                 f"transforms {_transforms_text(self.transforms)}"]
        if self.samples is not None:
            parts.append(f"{self.samples} samples")
        if self.tensors:
            parts.append(f"{len(self.tensors)} per-tensor rule{'s' if len(self.tensors) != 1 else ''}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
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

    def fields(self, data: Any, path: str, allowed: Sequence[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            if not path:
                raise InputError(f"{self.where}: expected a JSON object, found {_show(data)}")
            raise self.fail(path, f"an object with fields {', '.join(allowed)}", data)
        for key in data:
            if key not in allowed:
                at = f"{path}.{key}" if path else key
                one_of = "one of " if len(allowed) > 1 else ""
                raise InputError(f'{self.where}: field "{at}": unknown field; expected {one_of}{", ".join(allowed)}')
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
        if not _is_int(version) or version != RECIPE_VERSION:
            raise self.fail("version", f"{RECIPE_VERSION} (the recipe version this edgequant reads)", version)
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
            rule = self.fields(rule, f"tensors.{name}", _TENSOR_FIELDS)
            rules[name] = TensorRule(observer=self.observer(rule.get("observer", AUTO), f"tensors.{name}.observer"))
        return Recipe(version=version, scheme=self.enum(data, "scheme", Scheme, None),
                      engine=self.enum(data, "engine", EngineName, EngineName.LITERT),
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
