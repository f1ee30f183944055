"""evaluate/metrics.py against hand-computed values."""

import math

import numpy as np
import pytest

from edgequant.evaluate.metrics import fidelity, predictions, top1


def test_sqnr_matches_definition() -> None:
    ref = np.array([[3.0, 4.0]])  # signal power 25
    out = np.array([[3.0, 3.0]])  # noise power 1
    f = fidelity(out, ref)
    assert f.sqnr_db == pytest.approx(10 * math.log10(25.0), abs=1e-9)
    assert f.max_abs_error == pytest.approx(1.0)
    assert f.cosine == pytest.approx((9 + 12) / (5 * math.sqrt(18)), abs=1e-12)


def test_identical_outputs_have_infinite_sqnr_and_unit_cosine() -> None:
    ref = np.random.default_rng(0).normal(size=(5, 3))
    f = fidelity(ref.copy(), ref)
    assert math.isinf(f.sqnr_db) and f.cosine == pytest.approx(1.0) and f.max_abs_error == 0.0


def test_zero_rows_count_as_identical() -> None:
    f = fidelity(np.zeros((2, 3)), np.zeros((2, 3)))
    assert f.cosine == 1.0


def test_top1_and_binary_threshold() -> None:
    out = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert top1(out, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert list(predictions(np.array([[0.2], [0.7]]))) == [0, 1]
