"""The real models of the benchmark: where each comes from, its data per split, and how it is scored.

Every model is a ``RealModel``: a MODEL spec for ``edgequant.convert`` (with the input shapes an ONNX
source needs), optional peer sources (a torch ``file.py:build`` for PT2E, a .keras file for
TFLiteConverter), a data function giving the model's named inputs and labels for a split, and a kind
that picks the task metrics (score.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.real import data
from benchmarks.real.fetch import DEFAULT_CACHE, path

HERE = Path(__file__).resolve().parent
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclasses.dataclass(frozen=True)
class Split:
    """One split's model inputs (by input name, batch first) and its labels (strings, or None)."""

    inputs: dict[str, np.ndarray]
    labels: list[str] | None = None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))


@dataclasses.dataclass(frozen=True)
class RealModel:
    name: str
    title: str
    kind: str  # classifier | ocr | saliency | sentence | face
    source: Callable[[], str]  # a MODEL spec for edgequant.convert
    make_split: Callable[[str, int], Split]
    input_shapes: tuple[str, ...] | None = None
    transformer: bool = False
    cnn: bool = False
    torch_build: str | None = None  # "file.py:build" for litert-torch's PT2E
    keras: Callable[[], Path] | None = None  # a .keras source for TFLiteConverter
    charset: Callable[[], list[str]] | None = None  # OCR: class i >= 1 is charset[i - 1]


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _imagenet(name: str) -> Callable[[str, int], Split]:
    def make(split: str, count: int) -> Split:
        x = data.crops(split, count).astype(np.float32) / 255.0
        return Split({name: _nchw((x - IMAGENET_MEAN) / IMAGENET_STD)})
    return make


def _efficientnet(split: str, count: int) -> Split:
    return Split({"inputs": _nchw((data.crops(split, count).astype(np.float32) - 127.0) / 128.0)})


def _text_batch(split: str, count: int, height: int, width: int, keep_aspect: bool) -> tuple[np.ndarray, list[str]]:
    """Rendered text lines as NCHW float in [-1, 1]: aspect kept and right-padded with 0 (PP-OCR's
    recognizer preprocessing), or stretched to height x width."""
    strings = data.text_strings(split, count)
    return text_lines(strings, split, height, width, keep_aspect), strings


def text_lines(strings: list[str], split: str, height: int, width: int, keep_aspect: bool) -> np.ndarray:
    """``strings`` rendered in ``split``'s fonts, noise and blur, as the recognizers' NCHW input."""
    from PIL import Image

    images = data.render_text(strings, split, height)
    batch = np.zeros((len(strings), height, width, 3), np.float32)
    for k, img in enumerate(images):
        w = min(width, img.shape[1]) if keep_aspect else width
        resized = np.asarray(Image.fromarray(img).resize((w, height), Image.BILINEAR)).astype(np.float32)
        batch[k, :, :w] = (resized / 255.0 - 0.5) / 0.5
    return _nchw(batch)


def _ppocr(split: str, count: int) -> Split:
    x, labels = _text_batch(split, count, 48, 320, keep_aspect=True)
    return Split({"x": x}, labels)


def _svtr(split: str, count: int) -> Split:
    x, labels = _text_batch(split, count, 32, 128, keep_aspect=False)
    return Split({"image": x}, labels)


@functools.cache
def ppocr_charset() -> list[str]:
    """PP-OCRv4's dictionary from the ONNX metadata ``character``, then the space PaddleOCR appends."""
    import onnx

    model = onnx.load(str(path("ppocr_rec")), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    return meta["character"].splitlines() + [" "]


def _faces(split: str, count: int) -> Split:
    return Split({"input": data.faces(split, count).astype(np.float32) / 127.5 - 1.0})


def _sentences(split: str, count: int) -> Split:
    from benchmarks.real import sentences
    from benchmarks.real.tokenizer import WordPieceTokenizer

    texts = data.sentence_split(split)[:count - count % 2]
    tok = WordPieceTokenizer.from_vocab_file(path("minilm_vocab"))
    return Split(tok.batch(texts, sentences.SEQ_LEN))


def minilm_keras(cache: Path = DEFAULT_CACHE) -> Path:
    """The fixed-length (32) Keras rebuild of MiniLM, made by benchmarks.real.minilm on first use."""
    target = cache / "minilm" / "minilm_seq32.keras"
    if not target.exists():
        from benchmarks.real import minilm

        minilm.main(["--cache", str(cache), "--seq-len", "32"])
    return target


MODELS: dict[str, RealModel] = {m.name: m for m in (
    RealModel("mobilenet_v2", "MobileNetV2 (torchvision, ImageNet)", "classifier",
              lambda: f"{HERE / 'mobilenet_v2.py'}:build", _imagenet("x"), cnn=True,
              torch_build="benchmarks.real.mobilenet_v2"),
    RealModel("efficientnet_lite0", "EfficientNet-Lite0 (ImageNet)", "classifier",
              lambda: f"{HERE / 'efficientnet_lite0.py'}:build", _efficientnet, cnn=True,
              torch_build="benchmarks.real.efficientnet_lite0"),
    RealModel("ppocr_rec", "PP-OCRv4 text recognizer", "ocr", lambda: str(path("ppocr_rec")), _ppocr,
              input_shapes=("x=1,3,48,320",), charset=ppocr_charset),
    RealModel("svtrv2", "SVTRv2-base text recognizer", "ocr", lambda: str(path("svtrv2")), _svtr,
              input_shapes=("image=1,3,32,128",), transformer=True, charset=lambda: list(data.ASCII94)),
    RealModel("dinov2_focus", "DINOv2 ViT-S/14 saliency", "saliency", lambda: str(path("vit_focus")),
              _imagenet("input_image"), input_shapes=("input_image=1,3,224,224",), transformer=True),
    RealModel("minilm", "paraphrase-MiniLM-L3-v2 (Keras rebuild, length 32)", "sentence",
              lambda: str(minilm_keras()), _sentences, transformer=True, keras=minilm_keras),
    RealModel("blazeface", "BlazeFace short-range (fp16 .tflite)", "face",
              lambda: str(path("blazeface")), _faces, cnn=True),
)}
