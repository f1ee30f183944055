"""Data sets: load, check against the model's input, pick calibration samples.

DATA is a .npz (``x`` batch first, optional integer ``y``), a .npy of inputs, a
folder of images (class subfolders give labels), or in Python an array or an
iterable of arrays. Every check names what was expected and what was found,
because a wrong shape or an unnormalized uint8 image is the most common way a
quantized model silently loses accuracy.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Union

import numpy as np

from edgequant.checks import check_normalize, check_resize
from edgequant.data.images import load_image_folder
from edgequant.errors import InputError
from edgequant.types import Dataset

__all__ = ["DataLike", "load_data", "check_against_model", "select_samples"]

DataLike = Union[str, Path, np.ndarray, Dataset, Iterable[np.ndarray]]


def _load_file(path: Path, resize: tuple[int, int] | None, normalize: tuple[float, float] | None,
               channels: int | None) -> Dataset:
    if not path.exists():
        raise InputError(f"data not found: {path} (expected a .npz, a .npy or a folder of images)")
    if path.is_dir():
        x, y = load_image_folder(path, resize, normalize, channels)
        return Dataset(x, y, str(path))
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z.files:
                    raise InputError(f"{path.name} has no array 'x': expected arrays x (inputs) and optional y (labels), found {sorted(z.files)}")
                x = z["x"]
                y = z["y"] if "y" in z.files else None
        elif suffix == ".npy":
            x, y = np.load(path, allow_pickle=False), None
        else:
            raise InputError(f"unsupported data format {suffix or '(none)'!r} for {path.name}: expected .npz, .npy or an image folder")
    except ValueError as exc:
        if "pickle" in str(exc):
            # NumPy says "pickled data" for any file whose header it cannot
            # parse; never suggest unpickling an untrusted file.
            raise InputError(f"cannot read {path.name}: expected a NumPy {suffix} file of numeric arrays, "
                             "found object/pickled data or an unreadable file") from None
        raise InputError(f"cannot read {path.name}: expected a NumPy {suffix} file, found: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"cannot read {path.name}: expected a NumPy {suffix} file, found: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return Dataset(x, y, str(path))


def load_data(data: DataLike, resize: tuple[int, int] | None = None,
              normalize: tuple[float, float] | None = None, channels: int | None = None) -> Dataset:
    """Load ``data`` into a Dataset and run the checks that need no model."""
    resize, normalize = check_resize(resize), check_normalize(normalize)
    if isinstance(data, Dataset):
        ds = data
    elif isinstance(data, (str, Path)):
        ds = _load_file(Path(data), resize, normalize, channels)
    elif isinstance(data, np.ndarray):
        ds = Dataset(data, None, "array")
    else:
        try:
            rows = [np.asarray(a) for a in data]
        except TypeError:
            raise InputError(f"expected a path, an array or an iterable of arrays as data, found {type(data).__name__}") from None
        if not rows:
            raise InputError("data set is empty: expected at least one sample, found 0")
        ds = Dataset(np.stack(rows), None, "iterable")
    return _check_values(ds)


def _check_values(ds: Dataset) -> Dataset:
    x = np.asarray(ds.x)
    if x.dtype == object or x.dtype.kind not in "fiub":
        raise InputError(f"data {ds.source}: expected numeric inputs, found dtype {x.dtype}")
    if x.ndim == 0 or x.shape[0] == 0:
        raise InputError(f"data set {ds.source} is empty: expected at least one sample, found shape {x.shape}")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
            first = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0][0])
            raise InputError(f"data {ds.source}: expected finite values, found {n_nan} NaN and {n_inf} Inf (first in sample {first})")
    y = ds.y
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise InputError(f"labels y in {ds.source}: expected 1-D integer class ids, found dtype {y.dtype} shape {y.shape}")
        if len(y) != len(x):
            raise InputError(f"labels y in {ds.source}: expected {len(x)} labels (one per sample), found {len(y)}")
    return Dataset(x, y, ds.source)


def check_against_model(ds: Dataset, input_shape: tuple[int, ...], input_dtype: str = "float32") -> Dataset:
    """Check shape and dtype against the model input; cast to float32 when that is lossless in meaning."""
    x = ds.x
    want = tuple(input_shape[1:])
    found = tuple(x.shape[1:])
    fits = len(want) == len(found) and all(w in (-1, f) for w, f in zip(want, found))
    if not fits:
        pretty = "(N, " + ", ".join("?" if w == -1 else str(w) for w in want) + ")"
        raise InputError(f"data {ds.source}: expected inputs of shape {pretty} for this model, found {x.shape}")
    if input_dtype == "float32" and x.dtype.kind in "iu":
        raise InputError(
            f"data {ds.source}: expected float32 inputs (as the model was trained), found {x.dtype}; "
            "normalize the values first (for images use --normalize MEAN,STD)")
    return Dataset(x.astype(np.float32, copy=False), ds.y, ds.source)


def select_samples(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """Pick ``n`` samples deterministically (a seeded shuffle, so sorted data still mixes classes)."""
    if n is None or n >= len(ds):
        return ds
    if n <= 0:
        raise InputError(f"--samples: expected a positive number, found {n}")
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    return Dataset(ds.x[idx], None if ds.y is None else ds.y[idx], f"{ds.source}[{n} samples]")

