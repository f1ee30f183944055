"""evaluate/metrics.py against hand-computed values."""

import math

import numpy as np
import pytest

from edgequant.evaluate.metrics import changed_top1, fidelity, mcnemar_p, paired_top1, predictions, top1


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


def test_mcnemar_exact_p_matches_hand_computed_binomial_tails() -> None:
    # n = 9 discordant samples split 1:8: 2 * (C(9,0) + C(9,1)) / 2^9 = 2 * 10 / 512.
    assert mcnemar_p(1, 8) == pytest.approx(20 / 512)
    assert mcnemar_p(8, 1) == pytest.approx(20 / 512)  # two-sided: the order does not matter
    assert mcnemar_p(0, 6) == pytest.approx(2 / 64)
    # One or two images either way can never be told from chance.
    assert mcnemar_p(0, 1) == 1.0 and mcnemar_p(0, 2) == 0.5 and mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 5) == 1.0


def test_paired_top1_counts_the_samples_each_model_gets_right_alone() -> None:
    labels = np.array([0, 1, 2, 0, 1])
    a = np.eye(3)[[0, 1, 2, 1, 0]]  # right on samples 0, 1, 2
    b = np.eye(3)[[0, 2, 2, 0, 0]]  # right on samples 0, 2, 3
    p = paired_top1(a, b, labels)
    assert (p.a_only, p.b_only, p.samples) == (1, 1, 5) and p.p_value == 1.0
    with pytest.raises(ValueError, match="same samples"):
        paired_top1(a, b[:4], labels)


def test_changed_top1_counts_moved_predictions_right_or_wrong() -> None:
    ref = np.eye(3)[[0, 1, 2, 2]]
    out = np.eye(3)[[0, 2, 2, 1]]
    assert changed_top1(out, ref) == 2 and changed_top1(ref, ref) == 0
