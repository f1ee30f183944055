"""data: loaders and checks (no model needed)."""

import numpy as np
import pytest
from PIL import Image

from edgequant.data import check_against_model, load_data, select_samples
from edgequant.types import Signature, TensorSpec
from edgequant.errors import InputError


def test_npz_with_labels(tmp_path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((4, 2, 2, 1), np.float32), y=np.arange(4))
    ds = load_data(p)
    assert len(ds) == 4 and ds.has_labels


def test_iterable_of_arrays() -> None:
    ds = load_data([np.zeros((3,), np.float32), np.ones((3,), np.float32)])
    assert ds.x.shape == (2, 3)


def test_select_samples_is_deterministic_and_mixes() -> None:
    ds = load_data(np.arange(100, dtype=np.float32)[:, None])
    a, b = select_samples(ds, 10), select_samples(ds, 10)
    assert np.array_equal(a.x, b.x) and len(a) == 10
    assert a.x.max() > 50  # not simply the first ten of sorted data


def test_shape_check_names_expected_and_found() -> None:
    ds = load_data(np.zeros((2, 8, 8, 1), np.float32))
    with pytest.raises(InputError, match=r"expected inputs of shape \(N, 28, 28, 1\).*found \(2, 8, 8, 1\)"):
        check_against_model(ds, Signature("k", (TensorSpec("x", (-1, 28, 28, 1), "float32"),), ()))


def test_image_folder_with_classes_and_normalize(tmp_path) -> None:
    for label, value in (("a", 0), ("b", 255)):
        (tmp_path / label).mkdir()
        Image.fromarray(np.full((10, 12), value, np.uint8)).save(tmp_path / label / "img.png")
    ds = load_data(tmp_path, resize=(4, 6), normalize=(127.5, 127.5), channels=1)
    assert ds.x.shape == (2, 4, 6, 1)
    assert list(ds.y) == [0, 1]
    assert np.allclose(ds.x[0], -1.0) and np.allclose(ds.x[1], 1.0)


def test_nan_is_refused_with_counts() -> None:
    x = np.zeros((3, 2), np.float32)
    x[1, 0] = np.nan
    with pytest.raises(InputError, match="1 NaN and 0 Inf"):
        load_data(x)
