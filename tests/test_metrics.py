"""evaluate/metrics.py against hand-computed values."""

import math

import numpy as np
import pytest

from edgequant.evaluate.metrics import (changed_top1, fidelity, lower_bounds, mcnemar_p, paired_top1, predictions,
                                       top1)


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


def _noisy(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference outputs and a copy whose noise differs from sample to sample (as a quantized model's does)."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n, 10))
    return ref, ref + rng.normal(size=(n, 10)) * rng.uniform(0.0, 0.3, (n, 1))


def test_lower_bounds_sit_below_the_figures_and_close_in_with_more_samples() -> None:
    """A bound below the estimate, by a margin that shrinks as samples grow (about as 1 / sqrt(n))."""
    gaps = []
    for n in (16, 256):
        ref, out = _noisy(n)
        f, b = fidelity(out, ref), lower_bounds({"y": out}, {"y": ref})
        assert b.samples == n and b.confidence == 0.95 and b.accuracy is None
        assert b.sqnr_db < f.sqnr_db and b.cosine < f.cosine
        gaps.append(f.sqnr_db - b.sqnr_db)
    assert gaps[1] < gaps[0] / 2
    ref, out = _noisy(16)
    assert lower_bounds({"y": out}, {"y": ref}) == lower_bounds({"y": out}, {"y": ref})  # seeded


def test_lower_bounds_of_identical_outputs_and_of_the_worst_output() -> None:
    ref, out = _noisy(32)
    same = lower_bounds({"y": ref.copy()}, {"y": ref})
    assert math.isinf(same.sqnr_db) and same.cosine == 1.0
    both = lower_bounds({"a": ref.copy(), "b": out}, {"a": ref, "b": ref})
    assert both == lower_bounds({"b": out}, {"b": ref})


def test_top1_bound_is_paired_with_the_reference_model() -> None:
    """Predictions equal to the reference's keep its accuracy however low it is; one changed prediction in 16
    costs more than 1/16 at the bound, because 16 samples cannot show that a rarer change is not likelier."""
    ref = np.eye(4)[np.arange(16) % 4] + 0.01
    labels = np.zeros(16, np.int64)  # the reference gets 4 of 16 right
    b = lower_bounds({"y": ref.copy()}, {"y": ref}, labels, "y")
    assert b.accuracy == pytest.approx(0.25)
    moved = ref.copy()
    moved[0] = np.eye(4)[1]  # a right prediction made wrong
    b = lower_bounds({"y": moved}, {"y": ref}, labels, "y")
    assert b.accuracy is not None and b.accuracy < 0.25 - 1 / 16


def test_a_non_finite_output_on_one_sample_gives_the_worst_bound() -> None:
    """One NaN sample among 1,000 barely moves a mean, but a model that writes NaN must not meet a budget."""
    ref, out = _noisy(1000)
    out[7, 3] = np.nan
    b = lower_bounds({"y": out}, {"y": ref})
    assert b.sqnr_db == -math.inf and b.cosine == -1.0
