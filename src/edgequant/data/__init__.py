"""Data sets: load, check against the model's inputs by name, pick calibration samples.

DATA is a .npz (one array per model input name, or ``x`` for a one-input
model; optional integer labels ``y``), a .npy of inputs, a folder of images
(class subfolders give labels), or in Python an array, a mapping name ->
array, or an iterable of arrays or of such mappings (one sample each). Every
check names what was expected and what was found, because a wrong shape, an
unnormalized uint8 image or a float token id is the most common way a
quantized model silently goes wrong. Integer inputs stay integer.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Union

import numpy as np

from edgequant.checks import check_normalize, check_resize
from edgequant.data.images import load_image_folder
from edgequant.errors import InputError
from edgequant.types import UNNAMED, Dataset, Signature, TensorSpec

__all__ = ["DataLike", "load_data", "check_against_model", "select_samples", "LABELS"]

DataLike = Union[str, Path, np.ndarray, Dataset, Mapping[str, np.ndarray], Iterable[np.ndarray],
                 Iterable[Mapping[str, np.ndarray]]]

# The array of a .npz that holds labels; every other array is a model input.
LABELS = "y"


def _first(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


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
                inputs = {k: z[k] for k in z.files if k != LABELS}
                if not inputs:
                    raise InputError(f"{path.name} holds no input array: expected x (inputs) or one array per "
                                     f"model input name, and optional y (labels), found {sorted(z.files)}")
                y = z[LABELS] if LABELS in z.files else None
        elif suffix == ".npy":
            inputs, y = {UNNAMED: np.load(path, allow_pickle=False)}, None
        else:
            raise InputError(f"unsupported data format {suffix or '(none)'!r} for {path.name}: expected .npz, .npy or an image folder")
    except ValueError as exc:
        if "pickle" in str(exc):
            # NumPy says "pickled data" for any file whose header it cannot
            # parse; never suggest unpickling an untrusted file.
            raise InputError(f"cannot read {path.name}: expected a NumPy {suffix} file of numeric arrays, "
                             "found object/pickled data or an unreadable file") from None
        raise InputError(f"cannot read {path.name}: expected a NumPy {suffix} file, found: {_first(exc)}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"cannot read {path.name}: expected a NumPy {suffix} file, found: {_first(exc)}") from None
    return Dataset(inputs, y, str(path))


def _stack(rows: list, source: str) -> Dataset:
    if all(isinstance(r, Mapping) for r in rows):
        names = list(rows[0])
        for k, r in enumerate(rows):
            if list(r) != names:
                raise InputError(f"data {source}: expected every sample to name the inputs {', '.join(names)}, "
                                 f"found {', '.join(r)} in sample {k}")
        try:
            return Dataset({n: np.stack([np.asarray(r[n]) for r in rows]) for n in names}, None, source)
        except ValueError as exc:
            raise InputError(f"data {source}: expected samples of one shape per input, found: {_first(exc)}") from None
    if any(isinstance(r, Mapping) for r in rows):
        raise InputError(f"data {source}: expected samples that are all arrays or all mappings of input name to "
                         "array, found both")
    try:
        return Dataset(np.stack([np.asarray(r) for r in rows]), None, source)
    except ValueError as exc:
        raise InputError(f"data {source}: expected samples of one shape, found: {_first(exc)}") from None


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
    elif isinstance(data, Mapping):
        ds = Dataset({str(k): np.asarray(v) for k, v in data.items()}, None, "mapping")
    else:
        try:
            rows = list(data)
        except TypeError:
            raise InputError(f"expected a path, an array, a mapping of input name to array or an iterable of "
                             f"samples as data, found {type(data).__name__}") from None
        if not rows:
            raise InputError("data set is empty: expected at least one sample, found 0")
        ds = _stack(rows, "iterable")
    return _check_values(ds)


def _check_values(ds: Dataset) -> Dataset:
    inputs = {}
    batch = None
    for name, value in ds.inputs.items():
        x = np.asarray(value)
        what = f"data {ds.source}" + (f", input '{name}'" if len(ds.inputs) > 1 or name != UNNAMED else "")
        if x.dtype == object or x.dtype.kind not in "fiub":
            raise InputError(f"{what}: expected numeric inputs, found dtype {x.dtype}")
        if x.ndim == 0 or x.shape[0] == 0:
            raise InputError(f"{what}: expected at least one sample, found shape {x.shape}")
        if batch is not None and x.shape[0] != batch[1]:
            raise InputError(f"data {ds.source}: expected every input to have the same number of samples, found "
                             f"{batch[1]} for '{batch[0]}' and {x.shape[0]} for '{name}'")
        batch = batch or (name, x.shape[0])
        if x.dtype.kind == "f":
            bad = ~np.isfinite(x)
            if bad.any():
                n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
                first = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0][0])
                raise InputError(f"{what}: expected finite values, found {n_nan} NaN and {n_inf} Inf (first in sample {first})")
        inputs[name] = x
    y = ds.y
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise InputError(f"labels y in {ds.source}: expected 1-D integer class ids, found dtype {y.dtype} shape {y.shape}")
        n = len(next(iter(inputs.values())))
        if len(y) != n:
            raise InputError(f"labels y in {ds.source}: expected {n} labels (one per sample), found {len(y)}")
    return Dataset(inputs, y, ds.source)


def _pretty(shape: tuple[int, ...]) -> str:
    return "(N, " + ", ".join("?" if w == -1 else str(w) for w in shape[1:]) + ")"


def _check_input(spec: TensorSpec, x: np.ndarray, what: str, limit: int | None) -> np.ndarray:
    want = tuple(spec.shape[1:])
    found = tuple(x.shape[1:])
    fits = len(want) == len(found) and all(w in (-1, f) for w, f in zip(want, found))
    if not fits:
        raise InputError(f"{what}: expected inputs of shape {_pretty(spec.shape)} for this model, found {x.shape}")
    if spec.is_float:
        if x.dtype.kind in "iub":
            raise InputError(f"{what}: expected float32 inputs (as the model was trained), found {x.dtype}; "
                             "normalize the values first (for images use --normalize MEAN,STD)")
        return x.astype(np.float32, copy=False)
    # An integer input (token ids, masks, indices) stays integer: a float here is a mistake, not a value to cast.
    if x.dtype.kind == "f":
        raise InputError(f"{what}: expected integer values ({spec.dtype}) for this model input, found {x.dtype}")
    info = np.iinfo(spec.dtype) if np.dtype(spec.dtype).kind in "iu" else None
    lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
    if info is not None and (lo < info.min or hi > info.max):
        raise InputError(f"{what}: expected values that fit {spec.dtype} ({info.min}..{info.max}), found "
                         f"{lo}..{hi}")
    if limit is not None and (lo < 0 or hi >= limit):
        bad = int(np.argwhere(((x < 0) | (x >= limit)).reshape(len(x), -1).any(axis=1))[0][0])
        raise InputError(f"{what}: expected ids 0..{limit - 1} (the model's embedding table has {limit} rows), "
                         f"found {lo if lo < 0 else hi} (first in sample {bad})")
    return x.astype(spec.dtype, copy=False)


def check_against_model(ds: Dataset, signature: Signature,
                        limits: Mapping[str, int] | None = None) -> Dataset:
    """Match the data's arrays to the model's inputs by name and check each one's shape, dtype and range.

    A one-input model takes a data set of one array whatever its name (``x``,
    a .npy, an image folder). ``limits`` gives, per integer input, the rows of
    the embedding table it indexes. Float inputs are cast to float32; integer
    inputs to the model's integer dtype where every value fits.
    """
    names = signature.input_names
    given = dict(ds.inputs)
    if len(names) == 1 and len(given) == 1 and names[0] not in given:
        if UNNAMED not in given:
            raise InputError(f"data {ds.source} has no array '{UNNAMED}' (nor '{names[0]}'): expected {UNNAMED} or "
                             f"one array per model input name, and optional y (labels), found {', '.join(given)}")
        given = {names[0]: given[UNNAMED]}
    missing = [n for n in names if n not in given]
    extra = [n for n in given if n not in names]
    if missing or extra:
        found = ", ".join(given)
        detail = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                            f"unknown {', '.join(extra)}" if extra else "") if part)
        raise InputError(f"data {ds.source}: expected one array per model input ({', '.join(names)}), found "
                         f"{found} ({detail})")
    limits = limits or {}
    checked = {}
    for spec in signature.inputs:
        what = f"data {ds.source}" + (f", input '{spec.name}'" if len(names) > 1 else "")
        checked[spec.name] = _check_input(spec, given[spec.name], what, limits.get(spec.name))
    return Dataset(checked, ds.y, ds.source)


def select_samples(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """Pick ``n`` samples deterministically (a seeded shuffle, so sorted data still mixes classes)."""
    if n is None or n >= len(ds):
        return ds
    if n <= 0:
        raise InputError(f"--samples: expected a positive number, found {n}")
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    return ds.take(idx, f"{ds.source}[{n} samples]")
