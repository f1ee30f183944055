"""A folder of images as a data set.

Layout: either images directly in the folder (no labels) or one subfolder per
class (labels are the sorted subfolder names' indices, as Keras'
image_dataset_from_directory does). Pixels are read as 0..255 and mapped with
``(pixel - MEAN) / STD``: the same convention LiteRT uses for quantized input
stats, so ``--normalize 0,255`` gives 0..1 and ``--normalize 127.5,127.5``
gives -1..1. Without ``--normalize`` pixels are divided by 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgequant.errors import InputError

__all__ = ["load_image_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read(path: Path, resize: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if resize is not None:
                img = img.resize((resize[1], resize[0]), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read image {path}: expected a PNG/JPEG/BMP/GIF/WebP file, found: {exc}") from None
    return arr[..., None] if arr.ndim == 2 else arr


def load_image_folder(folder: Path, resize: tuple[int, int] | None, normalize: tuple[float, float] | None,
                      channels: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read every image under ``folder``; returns (x, y) with y None when unlabeled."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    files: list[tuple[Path, int | None]] = []
    if classes:
        for label, sub in enumerate(classes):
            files.extend((p, label) for p in _images_in(sub))
    else:
        files = [(p, None) for p in _images_in(folder)]
    if not files:
        raise InputError(f"image folder {folder} is empty: expected {', '.join(sorted(IMAGE_SUFFIXES))} files, found none")
    arrays = [_read(p, resize, channels) for p, _ in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InputError(f"images in {folder} differ in size ({len(shapes)} shapes, e.g. {sorted(shapes)[:2]}): expected one size; pass --resize H,W")
    x = np.stack(arrays)
    mean, std = normalize if normalize is not None else (0.0, 255.0)
    if std == 0:
        raise InputError("--normalize: expected a non-zero STD, found 0")
    x = (x - mean) / std
    y = np.array([label for _, label in files], dtype=np.int64) if classes else None
    return x.astype(np.float32), y
