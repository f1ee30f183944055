"""PyTorch sources: a ``net.py:build`` function or a torch.export ``.pt2``, converted with litert-torch.

``net.py:build`` runs the user's file: it is code the user chose to run, as
``python net.py`` would be. ``build()`` returns ``(module, example_inputs)``,
the inputs a tuple of tensors or a dict of named tensors. Nothing is ever
unpickled: a ``.pt2`` is read by torch.export.load, and a state dict
(``.pth``/``.pt``) alone is refused, since it holds weights but no
architecture; the ``.py`` form loads it with ``torch.load(weights_only=True)``.

Every conversion goes through :func:`convert_module`, which also serves the
ONNX frontend: name the inputs and outputs, optionally make 4-D tensors
channels-last, convert, and check the .tflite against the source.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgequant._util import last_error_line, quiet
from edgequant.errors import EngineError, InputError, UnsupportedError
from edgequant.frontends.check import check_conversion, generated_inputs
from edgequant.frontends.tflite import inspect_float_tflite
from edgequant.frontends.torchenv import require
from edgequant.types import FloatModel, Layout, SourceKind, SourceOptions, TensorSpec

__all__ = ["split_builder", "load_builder", "load_pt2", "load_pytorch", "convert_module", "convert_torch_module",
           "refuse_state_dict"]

STATE_DICT_SUFFIXES = (".pth", ".pt")


def split_builder(text: str) -> tuple[Path, str] | None:
    """``net.py:build`` -> (Path('net.py'), 'build'); None for any other form."""
    head, sep, func = str(text).rpartition(":")
    if sep and head.lower().endswith(".py") and func.isidentifier():
        return Path(head), func
    return None


def refuse_state_dict(path: Path) -> None:
    raise InputError(f"{path.name} holds PyTorch weights without the model's code: expected net.py:build, a function "
                     "returning (module, example_inputs) that loads these weights with "
                     "torch.load(path, weights_only=True), or a torch.export .pt2")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:240]}" if text else type(exc).__name__


def load_builder(path: Path, func: str) -> tuple[Any, Any]:
    """Run ``path`` as a module and call ``func()``; returns (module, example_inputs) as checked here."""
    (torch,) = require("torch", what=f"{path.name}:{func}")
    if not path.is_file():
        raise InputError(f"model not found: {path} (expected a Python file defining {func}())")
    spec = importlib.util.spec_from_file_location(f"edgequant_user_model_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot load {path.name} as Python: expected a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
        builder = getattr(module, func, None)
        if not callable(builder):
            found = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_"))
            raise InputError(f"{path.name} has no function {func}(): expected one returning (module, "
                             f"example_inputs), found {', '.join(found) or 'no functions'}")
        built = builder()
    except InputError:
        raise
    except Exception as exc:  # the user's code: report its error in one line
        raise InputError(f"{path.name}:{func} failed: {_first_line(exc)}") from None
    finally:
        sys.path.remove(str(path.parent.resolve()))
    return _check_built(built, torch, f"{path.name}:{func}()")


def _check_built(built: Any, torch: Any, what: str) -> tuple[Any, Any]:
    if not (isinstance(built, tuple) and len(built) == 2):
        raise InputError(f"{what} must return (module, example_inputs), found {type(built).__name__}")
    module, example = built
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{what} must return a torch.nn.Module first, found {type(module).__name__}")
    return module, check_example_inputs(example, torch, what)


def check_example_inputs(example: Any, torch: Any, what: str) -> tuple | dict:
    if isinstance(example, torch.Tensor):
        example = (example,)
    if isinstance(example, list):
        example = tuple(example)
    if isinstance(example, tuple):
        bad = [type(v).__name__ for v in example if not isinstance(v, torch.Tensor)]
    elif isinstance(example, Mapping):
        bad = [f"{k}: {type(v).__name__}" for k, v in example.items()
               if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
        example = dict(example)
    else:
        bad = [type(example).__name__]
    if bad or not example:
        raise InputError(f"{what}: expected example inputs as a tuple of tensors or a dict of named tensors, "
                         f"found {', '.join(bad) or 'none'}")
    return example


def load_pt2(path: Path) -> tuple[Any, Any]:
    """A torch.export ExportedProgram (.pt2) and its example inputs (or zeros of its input shapes)."""
    (torch,) = require("torch", what=path.name)
    try:
        with quiet():
            program = torch.export.load(str(path))
    except Exception as exc:
        raise InputError(f"cannot load {path.name}: expected a .pt2 saved with torch.export.save, found: "
                         f"{_first_line(exc)}") from None
    example = getattr(program, "example_inputs", None)
    if example is not None and not example[1]:
        example = tuple(example[0])
    elif example is not None:
        example = dict(example[1]) if not example[0] else tuple(example[0])
    else:
        placeholders = [n for n in program.graph.nodes if n.op == "placeholder"]
        user = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        vals = {n.name: n.meta.get("val") for n in placeholders}
        example = tuple(torch.zeros(tuple(int(d) for d in vals[u].shape), dtype=vals[u].dtype) for u in user)
    return program.module(), check_example_inputs(example, torch, path.name)


def _flatten_outputs(out: Any, torch: Any) -> tuple[list[str], list[Any]]:
    if isinstance(out, torch.Tensor):
        return ["output_0"], [out]
    if isinstance(out, Mapping):
        return [str(k) for k in out], list(out.values())
    if isinstance(out, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in out):
        return [f"output_{i}" for i in range(len(out))], list(out)
    raise InputError(f"expected the model to return a tensor, a tuple of tensors or a dict of them, found "
                     f"{type(out).__name__}")


def _input_names(module: Any, example: tuple | dict) -> list[str]:
    if isinstance(example, dict):
        return list(example)
    try:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= len(example):
        return [p.name for p in params[:len(example)]]
    return [f"args_{i}" for i in range(len(example))]


def _wrap(module: Any, names: list[str], as_kwargs: bool, out_names: list[str], channel_last_in: list[int],
          channel_last_out: list[int]) -> Any:
    """module -> a module taking named keyword inputs and returning {output name: tensor} (for the signature)."""
    import litert_torch
    import torch

    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: Any) -> tuple:
            out = self.inner(**dict(zip(names, args))) if as_kwargs else self.inner(*args)
            return tuple(_flatten_outputs(out, torch)[1])

    inner: Any = Flat()
    if channel_last_in or channel_last_out:
        inner = litert_torch.to_channel_last_io(inner, args=channel_last_in, outputs=channel_last_out)

    class Named(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, **inputs: Any) -> dict:
            return dict(zip(out_names, self.inner(*[inputs[n] for n in names])))

    named = Named()
    named.training = False  # not .eval(): it recurses into the user's module, which a .pt2's refuses
    return named


def _to_last(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (0, 2, 3, 1))


def convert_module(module: Any, example: tuple | dict, *, source: Path, kind: SourceKind,
                   options: SourceOptions = SourceOptions(), what: str | None = None,
                   reference: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None,
                   notes: Sequence[str] = ()) -> FloatModel:
    """Convert a torch module with litert-torch and check the .tflite against ``reference``.

    ``reference`` maps source-layout inputs {name: array} to outputs {name:
    array}; by default the torch module itself. ``options.check_inputs`` are
    the user's input sets for the check; without them, the example inputs
    and two generated sets are used.
    """
    torch, litert_torch = require("torch", "litert_torch", what=what or source.name)
    what = what or source.name
    try:
        module = module.eval()
    except NotImplementedError:  # a .pt2's module: its graph is already exported in eval mode
        pass
    names = _input_names(module, example)
    tensors = list(example.values()) if isinstance(example, dict) else list(example)
    try:
        with torch.no_grad():
            out = module(**example) if isinstance(example, dict) else module(*example)
    except Exception as exc:
        raise InputError(f"{what}: the model fails on its example inputs: {_first_line(exc)}") from None
    out_names, outs = _flatten_outputs(out, torch)
    nhwc = options.layout is Layout.NHWC
    cl_in = [i for i, t in enumerate(tensors) if nhwc and t.ndim == 4 and t.is_floating_point()]
    cl_out = [i for i, t in enumerate(outs) if nhwc and isinstance(t, torch.Tensor) and t.ndim == 4]
    if nhwc and not cl_in:
        raise InputError(f"--layout nhwc: expected a 4-D float input to make channels-last in {what}, found "
                         + ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, tensors)))
    wrapped = _wrap(module, names, isinstance(example, dict), out_names, cl_in, cl_out)

    def tflite_layout(inp: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: _to_last(np.asarray(inp[n])) if i in cl_in else np.asarray(inp[n]) for i, n in enumerate(names)}

    sample = {n: (t.permute(0, 2, 3, 1) if i in cl_in else t) for i, (n, t) in enumerate(zip(names, tensors))}
    tflite = _litert_convert(litert_torch, wrapped, sample, what)

    if reference is None:
        def reference(inp: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            with torch.no_grad():
                feed = [torch.from_numpy(np.ascontiguousarray(inp[n])) for n in names]
                got = module(**dict(zip(names, feed))) if isinstance(example, dict) else module(*feed)
            return {k: v.numpy() for k, v in zip(*_flatten_outputs(got, torch))}

    def reference_tflite_layout(inp: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        back = {n: np.transpose(inp[n], (0, 3, 1, 2)) if i in cl_in else inp[n] for i, n in enumerate(names)}
        got = reference(back)
        return {n: _to_last(np.asarray(got[n])) if i in cl_out else np.asarray(got[n])
                for i, n in enumerate(out_names)}

    given = [tflite_layout(_named_set(s, names, what)) for s in options.check_inputs]
    specs = [TensorSpec(n, tuple(sample[n].shape), str(sample[n].dtype).replace("torch.", "")) for n in names]
    own = [{n: t.detach().numpy() for n, t in sample.items()}]
    check = check_conversion(tflite, given or own + generated_inputs(specs, 2), reference_tflite_layout, what)
    layout_note = ("layout: NHWC (channels-last inputs " + ", ".join(names[i] for i in cl_in) + ")" if nhwc else
                   "layout: NCHW, as exported (--layout nhwc gives channels-last I/O)")
    model = inspect_float_tflite(tflite, source, kind)
    return FloatModel(source=model.source, kind=kind, tflite=model.tflite, signature=model.signature,
                      notes=(*notes, layout_note, check.describe() + ("" if given else
                             " (example and generated inputs; pass data for your own)")))


def _named_set(inputs: Mapping[str, np.ndarray], names: list[str], what: str) -> dict[str, np.ndarray]:
    """One input set for the check, by the model's input names (a bare array feeds a one-input model)."""
    inputs = dict(inputs)
    if len(inputs) == 1 and len(names) == 1 and names[0] not in inputs:
        return {names[0]: next(iter(inputs.values()))}
    if set(inputs) != set(names):
        raise InputError(f"data for checking {what}: expected inputs {', '.join(names)}, found "
                         f"{', '.join(sorted(inputs))}")
    return inputs


def convert_torch_module(module: Any, example_inputs: Any, options: SourceOptions) -> FloatModel:
    """An in-memory torch module (edgequant.convert(module, example_inputs=...)) as a checked float .tflite."""
    (torch,) = require("torch", what="a torch module")
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"expected a model path, a FloatModel or a torch.nn.Module, found {type(module).__name__}")
    if example_inputs is None:
        raise InputError("converting a torch module needs example_inputs=(tensor, ...) or {name: tensor}, found none")
    example = check_example_inputs(example_inputs, torch, type(module).__name__)
    return convert_module(module, example, source=Path(type(module).__name__), kind=SourceKind.PYTORCH,
                          options=options, what=type(module).__name__)


def _litert_convert(litert_torch: Any, wrapped: Any, sample: dict, what: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="edgequant-torch-") as tmp:
        out = Path(tmp) / "model.tflite"
        try:
            with quiet() as captured:
                litert_torch.convert(wrapped, (), sample).export(str(out))
        except Exception as exc:
            raise UnsupportedError(f"litert-torch cannot convert {what}: "
                                   f"{last_error_line(captured, _first_line(exc))}") from None
        if not out.is_file():
            raise EngineError(f"litert-torch wrote no model for {what}")
        return out.read_bytes()


def load_pytorch(path: Path, options: SourceOptions, builder: str | None = None) -> FloatModel:
    """A ``net.py:build`` (``builder`` names the function) or ``.pt2`` source as a checked float .tflite."""
    if builder is not None:
        module, example = load_builder(path, builder)
        source_name = f"{path.name}:{builder}"
    else:
        module, example = load_pt2(path)
        source_name = path.name
    return convert_module(module, example, source=path.with_name(source_name), kind=SourceKind.PYTORCH,
                          options=options, what=source_name)
