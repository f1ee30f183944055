"""int8 on real MobileNetV2 (torchvision's ImageNet weights): edgequant against litert-torch's own PT2E quantizer.

    python -m benchmarks.real.pt2e [--transforms default|none] [--runs 30]

PT2E (torch.export, prepare_pt2e, calibration, convert_pt2e, then litert-torch) is what a
PyTorch user of LiteRT knows; litert-torch's PT2EQuantizer with its symmetric per-channel
static config is its int8. Both calibrate on the same images, and every figure is measured
on other images: the calibration crops come from scikit-image photos none of the test crops
come from. Figures against the float .tflite on the test images: top-1 agreement, top-5
overlap, output SQNR; size; batch-1 latency interleaved in one run (1 thread).
Writes benchmarks/results/pt2e.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "results"
# Photos from scikit-image and scikit-learn; the three groups share no photo (skimage's "cat" is chelsea, so
# it is in none of them). Choices are made on DEV_PHOTOS (benchmarks/real/int8_choices.py), never on TEST_PHOTOS.
CALIBRATION_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
TEST_PHOTOS = ("immunohistochemistry", "hubble_deep_field", "colorwheel", "china.jpg", "flower.jpg")
DEV_PHOTOS = ("motorcycle_left", "retina", "camera", "coins", "grass", "brick")


def _photo(name: str) -> np.ndarray:
    if name.endswith(".jpg"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    import skimage.data

    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skimage.data, name)()
    return img if img.ndim == 2 else img[..., :3]  # grey photos are stacked to RGB by crops()


def crops(names: tuple[str, ...], per_photo: int, seed: int) -> np.ndarray:
    """Seeded square crops of 50-100% of the short side, resized to 224 and flipped at random: uint8 NHWC."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        img = _photo(name)
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        h, w = img.shape[:2]
        for _ in range(per_photo):
            side = int(min(h, w) * rng.uniform(0.5, 1.0))
            top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = np.asarray(Image.fromarray(img[top:top + side, left:left + side]).resize((224, 224),
                                                                                           Image.BILINEAR))
            out.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return np.stack(out)


def pt2e_int8(module, example, calibration: np.ndarray) -> bytes:
    """litert-torch's PT2E static int8 (symmetric, per-channel), calibrated on ``calibration``."""
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    graph = prepare_pt2e(torch.export.export(module, example).module(), quantizer)
    with torch.no_grad():
        for i in range(len(calibration)):
            graph(torch.from_numpy(calibration[i:i + 1]))
    graph = convert_pt2e(graph, fold_quantize=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pt2e.tflite"
        litert_torch.convert(graph, example, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
        return path.read_bytes()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real.pt2e", description=__doc__.split("\n")[0])
    p.add_argument("--transforms", default="default", help="edgequant's --transforms (default: its defaults)")
    p.add_argument("--calibration-per-photo", type=int, default=16)
    p.add_argument("--test-per-photo", type=int, default=12)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    import edgequant as eq
    from benchmarks.real.mobilenet_v2 import build, preprocess
    from edgequant._util import quiet
    from edgequant.evaluate import fidelity, measure_interleaved
    from edgequant.runtime import Runner

    started = time.time()
    module, example = build()
    calib = preprocess(crops(CALIBRATION_PHOTOS, args.calibration_per_photo, seed=1))
    test = preprocess(crops(TEST_PHOTOS, args.test_per_photo, seed=2))
    spec = f"{Path(__file__).with_name('mobilenet_v2.py')}:build"
    floats = eq.convert(spec)
    models: dict[str, bytes] = {"float": floats.tflite}
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "calib.npy", calib)
        t = time.time()
        transforms = None if args.transforms == "default" else args.transforms
        try:
            models["edgequant int8"] = eq.quantize(floats, "int8", calibration=Path(tmp) / "calib.npy",
                                                   samples=len(calib), transforms=transforms).tflite
        except eq.EdgequantError as exc:
            errors["edgequant int8"] = str(exc)
        seconds["edgequant int8"] = time.time() - t
    t = time.time()
    try:
        with quiet():
            models["litert-torch PT2E int8"] = pt2e_int8(module, example, calib)
    except Exception as exc:  # a peer that fails is a row with its reason
        errors["litert-torch PT2E int8"] = str(exc).strip().splitlines()[0][:200]
    seconds["litert-torch PT2E int8"] = time.time() - t

    runners = {name: Runner(blob, what=name) for name, blob in models.items()}
    outs = {name: r.predict_output(test) for name, r in runners.items()}
    ref = outs["float"]
    top1 = ref.argmax(1)
    top5 = np.argsort(-ref, 1)[:, :5]
    lat = dict(zip(runners, measure_interleaved(list(runners.values()), test, args.runs, 5)))
    rows = {}
    for name, out in outs.items():
        mine5 = np.argsort(-out, 1)[:, :5]
        fid = fidelity(out, ref)
        rows[name] = {"bytes": len(models[name]), "top1_agreement": float((out.argmax(1) == top1).mean()),
                      "top5_overlap": float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(mine5, top5)])),
                      "sqnr_db": None if not np.isfinite(fid.sqnr_db) else fid.sqnr_db, "cosine": fid.cosine,
                      "latency_ms": lat[name].median_ms,
                      "latency_ratio": lat[name].median_ms / lat["float"].median_ms,
                      "quantize_seconds": seconds.get(name)}
    result = {"model": "MobileNetV2 (torchvision ImageNet weights)", "calibration_images": len(calib),
              "test_images": len(test), "calibration_photos": CALIBRATION_PHOTOS, "test_photos": TEST_PHOTOS,
              "edgequant_transforms": args.transforms, "latency_runs": args.runs, "rows": rows,
              "errors": errors, "seconds": round(time.time() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pt2e.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# int8 on {result['model']}: edgequant vs litert-torch PT2E", "",
             f"{len(calib)} calibration crops of {', '.join(CALIBRATION_PHOTOS)}; {len(test)} test crops of "
             f"{', '.join(TEST_PHOTOS)} (no photo in both). Against the float .tflite on the test crops; latency "
             f"median of {args.runs} interleaved batch-1 runs, 1 thread. edgequant transforms: {args.transforms}.",
             "", "| method | MB | top-1 agreement | top-5 overlap | SQNR dB | x float latency | quantize s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        sq = "inf" if r["sqnr_db"] is None else f"{r['sqnr_db']:.1f}"
        qs = "" if r["quantize_seconds"] is None else f"{r['quantize_seconds']:.0f}"
        lines.append(f"| {name} | {r['bytes'] / 1e6:.2f} | {r['top1_agreement'] * 100:.1f}% | "
                     f"{r['top5_overlap'] * 100:.1f}% | {sq} | {r['latency_ratio']:.2f} | {qs} |")
    lines += [f"| {name} | failed: {why} | | | | | |" for name, why in errors.items()]
    (args.out / "pt2e.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
