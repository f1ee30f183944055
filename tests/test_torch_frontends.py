"""PyTorch and ONNX sources on small models built in code: forms of MODEL, bad input, the conversion check.

Real pretrained models are in test_real_models.py. Tolerance of the conversion
check: frontends/check.py (max |tflite - source| <= 1e-4 + 1e-3 * max |source|).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import edgequant as eq  # noqa: E402
from edgequant.cli import main  # noqa: E402
from edgequant.errors import EngineError, InputError  # noqa: E402
from edgequant.frontends.check import check_conversion  # noqa: E402

NET = '''
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

def build():
    return Net().eval(), (torch.rand(1, 3, 16, 16),)

def wrong_types():
    return "not a module", [1, 2]

def no_inputs():
    return Net(), {"x": 3}
'''


@pytest.fixture(scope="module")
def net_py(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("torch") / "net.py"
    path.write_text(NET)
    return path


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(capsys, code_expected: int, *argv: str) -> str:
    code, _, err = _cli(capsys, *argv)
    assert code == code_expected, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgequant: error: "), err
    return lines[0]


def _onnx_model(tmp: Path, name: str, nodes, inputs, outputs, initializers=(), opset: int = 13) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp / name
    onnx.save(model, str(path))
    return path


def _conv_onnx(tmp: Path, dims=(1, 3, 8, 8)) -> Path:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.normal(0, 0.3, (2, 4)).astype(np.float32), "fc")
    shape = numpy_helper.from_array(np.array([1, 4], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Reshape", ["p", "shape"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1, name="fc")]
    inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, list(dims))
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [dims[0], 2])
    return _onnx_model(tmp, "conv.onnx", nodes, [inp], [out], [w, fc, shape])


# ---- bad input: one line, exit 2 -------------------------------------------------------------------------

def test_py_without_function(capsys, net_py, tmp_path):
    line = _one_line_error(capsys, 2, "convert", f"{net_py}:missing", "-o", tmp_path / "m.tflite")
    assert "no function missing()" in line and "build" in line
    assert not (tmp_path / "m.tflite").exists()


def test_py_function_returning_wrong_types(capsys, net_py, tmp_path):
    line = _one_line_error(capsys, 2, "convert", f"{net_py}:wrong_types", "-o", tmp_path / "m.tflite")
    assert "torch.nn.Module" in line and "str" in line
    line = _one_line_error(capsys, 2, "convert", f"{net_py}:no_inputs", "-o", tmp_path / "m.tflite")
    assert "example inputs" in line and "x: int" in line


def test_corrupt_pt2_and_onnx(capsys, tmp_path):
    (tmp_path / "bad.pt2").write_bytes(b"not a zip")
    assert "torch.export.save" in _one_line_error(capsys, 2, "convert", tmp_path / "bad.pt2", "-o", tmp_path / "m")
    (tmp_path / "bad.onnx").write_bytes(b"\x08junk")
    assert "expected an ONNX model" in _one_line_error(capsys, 2, "convert", tmp_path / "bad.onnx", "-o",
                                                       tmp_path / "m")


def test_state_dict_is_refused_without_unpickling(capsys, tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"anything: the file is never read")
    line = _one_line_error(capsys, 2, "quantize", path, "--scheme", "dynamic", "-o", tmp_path / "m.tflite")
    assert "net.py:build" in line and "weights_only=True" in line


def test_onnx_lstm_is_named(capsys, tmp_path):
    h = 4
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in (("W", (1, 4 * h, 3)), ("R", (1, 4 * h, h)))]
    nodes = [helper.make_node("LSTM", ["seq", "W", "R"], ["y"], hidden_size=h, name="encoder_lstm")]
    path = _onnx_model(tmp_path, "lstm.onnx", nodes,
                       [helper.make_tensor_value_info("seq", TensorProto.FLOAT, [5, 1, 3])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1, 1, h])], inits)
    line = _one_line_error(capsys, 2, "convert", path, "-o", tmp_path / "m.tflite")
    assert "op LSTM" in line and "encoder_lstm" in line


def test_unknown_dims_and_unknown_input_shape_name(capsys, tmp_path):
    path = _conv_onnx(tmp_path, ("batch", 3, "h", "w"))
    line = _one_line_error(capsys, 2, "convert", path, "-o", tmp_path / "m.tflite")
    assert "--input-shape" in line and "image (batch,3,h,w)" in line
    line = _one_line_error(capsys, 2, "convert", path, "--input-shape", "pixels=1,3,8,8", "-o", tmp_path / "m")
    assert "pixels" in line and "image" in line
    line = _one_line_error(capsys, 2, "convert", path, "--input-shape", "image=1,3,x", "-o", tmp_path / "m")
    assert "NAME=D1,D2" in line


def test_without_the_extra_the_error_says_install(tmp_path, net_py):
    # A fresh interpreter where litert_torch cannot be imported, as without edgequant[torch].
    code = ("import sys; sys.modules['litert_torch'] = None\n"
            "from edgequant.cli import main\n"
            f"sys.exit(main(['convert', {str(net_py) + ':build'!r}, '-o', {str(tmp_path / 'm.tflite')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "install edgequant[torch]" in done.stderr and len(done.stderr.strip().splitlines()) == 1


# ---- the conversion check ---------------------------------------------------------------------------------

def test_check_refuses_outputs_beyond_tolerance(tmp_path, net_py):
    model = eq.convert(f"{net_py}:build")
    inputs = [{"x": np.random.default_rng(1).random((1, 3, 16, 16), np.float32)}]
    ok = check_conversion(model.tflite, inputs, lambda inp: {"output_0": _run_net(net_py, inp["x"])}, "net")
    assert ok.max_abs_diff <= ok.tolerance
    with pytest.raises(EngineError, match=r"output 'output_0' differs from the source by up to 0\.5"):
        check_conversion(model.tflite, inputs, lambda inp: {"output_0": _run_net(net_py, inp["x"]) + 0.5}, "net")


def _run_net(net_py: Path, x: np.ndarray) -> np.ndarray:
    import importlib.util

    spec = importlib.util.spec_from_file_location("net_for_test", net_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    module, _ = mod.build()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def test_a_wrong_conversion_is_refused_with_exit_1(capsys, monkeypatch, net_py, tmp_path):
    """litert-torch hands back a model computing something else: convert must refuse it and write nothing."""
    import edgequant.frontends.pytorch as pt

    real = pt._litert_convert

    def miscompiled(litert_torch, wrapped, sample, what):
        inner = wrapped.inner.inner  # Named -> Flat -> the user's Net
        with torch.no_grad():
            inner.fc.bias += 1.0  # the converted graph gets other weights than the source keeps
        try:
            return real(litert_torch, wrapped, sample, what)
        finally:
            with torch.no_grad():
                inner.fc.bias -= 1.0

    monkeypatch.setattr(pt, "_litert_convert", miscompiled)
    line = _one_line_error(capsys, 1, "convert", f"{net_py}:build", "-o", tmp_path / "m.tflite")
    assert "output 'output_0' differs from the source by up to 1" in line
    assert not (tmp_path / "m.tflite").exists()


# ---- forms that work --------------------------------------------------------------------------------------

def test_py_build_pt2_and_module_convert_and_agree(capsys, net_py, tmp_path):
    code, out, err = _cli(capsys, "convert", f"{net_py}:build", "-o", tmp_path / "a.tflite")
    assert code == 0, err
    assert "layout: NCHW" in out and "checked against the source" in out
    import importlib.util

    spec = importlib.util.spec_from_file_location("net_pt2", net_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    module, example = mod.build()
    torch.export.save(torch.export.export(module, example), str(tmp_path / "net.pt2"))
    m = eq.convert(tmp_path / "net.pt2", layout="nhwc")
    assert m.kind.value == "pytorch" and m.input_shape == (1, 16, 16, 3)
    assert any("NHWC" in n for n in m.notes)
    m2 = eq.convert(module, example_inputs=example, data={"x": np.random.default_rng(2).random((3, 3, 16, 16),
                                                                                               np.float32)})
    assert any("on 3 input set(s)" in n for n in m2.notes)


def test_onnx_converts_with_input_shape_and_quantizes(capsys, tmp_path):
    path = _conv_onnx(tmp_path, ("batch", 3, 8, 8))
    code, out, err = _cli(capsys, "convert", path, "--input-shape", "image=1,3,8,8", "-o", tmp_path / "f.tflite")
    assert code == 0, err
    assert "Constant nodes to initializers" in out and "checked against the source" in out
    x = np.random.default_rng(0).random((16, 3, 8, 8), np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = _cli(capsys, "quantize", path, "--input-shape", "image=1,3,8,8", "--scheme", "int8",
                          "--calibration", tmp_path / "x.npy", "--transforms", "none", "-o", tmp_path / "q.tflite")
    assert code == 0, err
    assert (tmp_path / "q.tflite").stat().st_size > 0


def test_edgequant_imports_only_litert_quantizer():
    """litert-torch installs ai-edge-quantizer beside our litert-quantizer; nothing of ours imports it."""
    src = Path(eq.__file__).parent
    offenders = [p for p in src.rglob("*.py") if "ai_edge_quantizer" in p.read_text()]
    assert offenders == []
    code = ("import sys, edgequant.engines.litert, edgequant.frontends.pytorch, edgequant.frontends.onnxmodel\n"
            "print('ai_edge_quantizer' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_resize_with_tensor_sizes_is_made_static():
    """onnx2torch's Resize reads its sizes or scales from a tensor (sizes.tolist()), which torch.export cannot
    trace (DINOv2's position-embedding interpolation); make_static writes them in as Python values."""
    from edgequant.frontends.fxpass import make_static
    from edgequant.frontends.torchenv import import_onnx2torch

    onnx2torch = import_onnx2torch("resize test")  # not pytest.importorskip: that imports torchvision's converters

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Mul", ["shape", "two"], ["sizes"]),  # sizes computed in the graph: 1,2,8,12 * ...
             helper.make_node("Resize", ["x", "", "", "sizes"], ["r"], mode="linear"),
             helper.make_node("Resize", ["r", "", "half"], ["y"], mode="nearest")]
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.int64), "two"),
             numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], np.float32), "half")]
    model = helper.make_model(helper.make_graph(nodes, "resize", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    gm = onnx2torch.convert(model).eval()
    arg = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 2, 4, 6)).astype(np.float32))
    expected = gm(arg)
    assert make_static(gm, (arg,))[0] == 2
    called = [type(gm.get_submodule(n.target)).__name__ for n in gm.graph.nodes if n.op == "call_module"]
    assert not any("Resize" in name for name in called)
    assert torch.allclose(gm(arg), expected)
    exported = torch.export.export(gm, (arg,)).module()
    assert torch.allclose(exported(arg), expected)


def test_if_on_shapes_only_is_replaced_by_its_branch():
    """SVTRv2's decoder picks a branch by the input's shape; with the shape fixed the If goes (onnx2torch has
    no If, and onnxsim fails on branches that read outer values). A data-dependent If stays."""
    ort = pytest.importorskip("onnxruntime")
    from edgequant.frontends.onnxmodel import _fold_constant_ifs

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    then = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    then2 = helper.make_graph([helper.make_node("Neg", ["x"], ["t2"])], "then2", [],
                              [helper.make_tensor_value_info("t2", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Size", ["x"], ["n"]),
             helper.make_node("Greater", ["n", "one"], ["big"]),
             helper.make_node("If", ["big"], ["y"], then_branch=then, else_branch=other),
             helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["positive"]),  # depends on the data
             helper.make_node("If", ["positive"], ["z"], then_branch=then2, else_branch=other)]
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    model = helper.make_model(helper.make_graph(nodes, "ifs", [x], [y, z], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    data = np.array([[1.0, -2.0, 3.0]], np.float32)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": data})
    assert _fold_constant_ifs(model, {"x": (1, 3)}, onnx, ort, "ifs") == 1
    assert [n.op_type for n in model.graph.node].count("If") == 1  # the data-dependent one
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"x": data})
    assert all(np.allclose(a, b) for a, b in zip(got, expected))


def test_squeeze_unsqueeze_and_tile_with_tensor_arguments_are_made_static():
    """Opset-13 Squeeze/Unsqueeze take their axes, Tile its repeats, as tensors computed in the graph
    (SVTRv2's mixer): torch.export stops on them until make_static writes the values in."""
    from edgequant.frontends.fxpass import make_static
    from edgequant.frontends.torchenv import import_onnx2torch

    onnx2torch = import_onnx2torch("squeeze test")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "two"], ["axis"]),  # 1: the size of dim 2, used as an axis
             helper.make_node("Add", ["axis", "one"], ["axis2"]),  # 2
             helper.make_node("Squeeze", ["x", "axis2"], ["s"]),  # (1, 3, 4)
             helper.make_node("Unsqueeze", ["s", "axis"], ["u"]),  # (1, 1, 3, 4)
             helper.make_node("Concat", ["shape", "shape"], ["reps8"], axis=0),
             helper.make_node("Slice", ["reps8", "zero", "four"], ["reps"]),  # (1, 3, 1, 4) as repeats
             helper.make_node("Tile", ["u", "reps"], ["y"])]
    inits = [numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([4], np.int64), "four")]
    model = helper.make_model(helper.make_graph(nodes, "squeeze", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    gm = onnx2torch.convert(model).eval()
    arg = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, 1, 4)).astype(np.float32))
    expected = gm(arg)
    make_static(gm, (arg,))
    called = {type(gm.get_submodule(n.target)).__name__ for n in gm.graph.nodes if n.op == "call_module"}
    assert not called & {"OnnxSqueezeDynamicAxes", "OnnxUnsqueezeDynamicAxes", "OnnxTile"}
    assert torch.equal(gm(arg), expected) and expected.shape == (1, 3, 3, 16)
    assert torch.equal(torch.export.export(gm, (arg,)).module()(arg), expected)


def test_split_sizes_and_constant_gather_indices_become_python_values():
    """Split (opset 13) reads its sizes, and Gather with a constant 0-d index indexes with a tensor: both
    became data-dependent scalars litert-torch could not lower (SVTRv2, DINOv2); make_static writes Python
    values, and the graph no longer reads a tensor as a number."""
    from edgequant.frontends.fxpass import make_static
    from edgequant.frontends.torchenv import import_onnx2torch

    onnx2torch = import_onnx2torch("split test")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 3])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("a", "g", "h")]
    nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1),
             helper.make_node("Gather", ["b", "idx"], ["g"], axis=-2),
             helper.make_node("Gather", ["x", "idxs"], ["h"], axis=2)]
    inits = [numpy_helper.from_array(np.array([2, 3], np.int64), "sizes"),
             numpy_helper.from_array(np.array(1, np.int64), "idx"),
             numpy_helper.from_array(np.array([2, 0], np.int64), "idxs")]
    model = helper.make_model(helper.make_graph(nodes, "split", [x], outs, inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    gm = onnx2torch.convert(model).eval()
    arg = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32))
    expected = gm(arg)
    make_static(gm, (arg,))
    called = {type(gm.get_submodule(n.target)).__name__ for n in gm.graph.nodes if n.op == "call_module"}
    assert not called & {"OnnxSplit13", "OnnxGather"}
    got = gm(arg)
    # onnx2torch hands a graph output of a multi-output node back as the node's whole tuple
    assert torch.equal(got[0][0], expected[0][0]) and torch.equal(got[1], expected[1])
    assert torch.equal(got[2], expected[2]) and torch.equal(expected[2], arg[:, :, [2, 0]])
    assert expected[1].shape == (2, 3) and torch.equal(expected[1], arg[:, 3, :])


def _gelu_onnx(form: str) -> "onnx.ModelProto":
    """A MatMul then GELU as exported: x * (1 + erf(x / sqrt 2)) * 0.5 in the order ``form`` names."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 1.0, (6, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(np.sqrt(2.0), np.float32), "root2"),
             numpy_helper.from_array(np.array(1 / np.sqrt(2.0), np.float32), "inv_root2"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Div", ["h", "root2"], ["s"]) if form != "mul-root" else
             helper.make_node("Mul", ["inv_root2", "h"], ["s"]),
             helper.make_node("Erf", ["s"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"])]
    if form in ("torch", "mul-root"):  # (x * (1 + erf)) * 0.5: torch.onnx.export's order
        nodes += [helper.make_node("Mul", ["h", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    elif form == "half-first":  # (0.5 * x) * (1 + erf)
        nodes += [helper.make_node("Mul", ["half", "h"], ["hh"]), helper.make_node("Mul", ["hh", "a"], ["y"])]
    elif form == "folded":  # the 0.5 folded into the next layer by onnxsim
        nodes += [helper.make_node("Mul", ["h", "a"], ["y"])]
    elif form == "shared":  # (1 + erf) also read elsewhere: not a GELU to replace
        nodes += [helper.make_node("Mul", ["h", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["g"]),
                  helper.make_node("Add", ["g", "a"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 8])
    model = helper.make_model(helper.make_graph(nodes, "gelu", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("form, fused", [("torch", 1), ("mul-root", 1), ("half-first", 1), ("folded", 1),
                                         ("shared", 0)])
def test_exported_gelu_becomes_one_gelu_again(form, fused):
    """litert-torch lowers erf to ~25 element-wise ops; fuse_gelu puts the GELU back where nothing else reads
    the pattern's values, and the module computes the same function (float32 erf against GELU: 1e-6)."""
    from edgequant.frontends.fxpass import fuse_gelu
    from edgequant.frontends.torchenv import import_onnx2torch

    onnx2torch = import_onnx2torch("gelu test")
    gm = onnx2torch.convert(_gelu_onnx(form)).eval()
    arg = torch.from_numpy(np.random.default_rng(1).normal(0, 2.0, (1, 5, 6)).astype(np.float32))
    expected = gm(arg)
    assert fuse_gelu(gm) == fused
    called = [type(gm.get_submodule(n.target)).__name__ for n in gm.graph.nodes if n.op == "call_module"]
    assert ("OnnxErf" in called) == (fused == 0)
    assert sum(n.target is torch.nn.functional.gelu for n in gm.graph.nodes) == fused
    assert torch.allclose(gm(arg), expected, atol=1e-5)


def test_onnx_gelu_converts_to_one_litert_op(tmp_path):
    from edgequant.graph.edit import GraphEditor

    path = tmp_path / "gelu.onnx"
    onnx.save(_gelu_onnx("torch"), str(path))
    fm = eq.convert(path, input_shapes=("x=1,5,6",))
    ops = [op.op for op in GraphEditor(fm.tflite).ops]
    assert ops.count("GELU") == 1 and "MINIMUM" not in ops, ops  # the erf polynomial's clamp is gone
    assert any("1 GELU" in note for note in fm.notes), fm.notes


def test_a_gemm_weight_view_is_stored_contiguously_and_converts_exactly(tmp_path):
    """A Gemm without transB becomes a Linear whose weight is a transposed view of the initializer: the ONNX
    route stores it contiguously before litert-torch reads it (see make_contiguous), and says so."""
    from edgequant.frontends.fxpass import make_contiguous
    from edgequant.frontends.torchenv import import_onnx2torch

    w = np.random.default_rng(3).normal(0, 1, (6, 4)).astype(np.float32)
    gemm = helper.make_node("Gemm", ["x", "w"], ["y"])
    graph = helper.make_graph([gemm], "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    gm = import_onnx2torch("gemm test").convert(model).eval()
    assert make_contiguous(gm) == 1 and make_contiguous(gm) == 0
    assert all(p.is_contiguous() for p in gm.parameters())
    path = tmp_path / "gemm.onnx"
    onnx.save(model, str(path))
    fm = eq.convert(path)
    assert any("; 1 weight views stored contiguously" in note for note in fm.notes), fm.notes
    x = np.random.default_rng(4).normal(0, 1, (2, 6)).astype(np.float32)
    out = next(iter(eq.run(fm.tflite, {"x": x}).outputs.values()))
    np.testing.assert_allclose(out, x @ w, atol=1e-5)
