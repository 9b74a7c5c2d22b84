"""Split-conformal calibration: coverage on synthetic scores matches 1 - epsilon; finite-sample edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clearvla.clarify.calibrate import (
    ConformalCalibrator,
    conformal_threshold,
    evaluate,
    nonconformity,
    prediction_set,
    quantile_rank,
)
from clearvla.errors import ConfigError, InputError


def _synthetic(rng: np.random.Generator, n: int, k: int = 3, concentration: float = 0.6):
    """Dirichlet scores; the true interpretation is drawn from them, so the scores are calibrated probabilities."""
    scores = rng.dirichlet(np.full(k, concentration), size=n)
    truth = (rng.random((n, 1)) > np.cumsum(scores, axis=1)).sum(axis=1).clip(max=k - 1)
    return scores, truth


@pytest.mark.parametrize("epsilon", [0.05, 0.1, 0.2])
def test_coverage_matches_one_minus_epsilon(epsilon: float) -> None:
    rng = np.random.default_rng(0)
    n_cal, n_test, trials = 300, 300, 400
    coverages = []
    for trial in range(trials):
        scores, truth = _synthetic(rng, n_cal + n_test)
        cal = ConformalCalibrator.fit(scores[:n_cal], truth[:n_cal], epsilon, nonempty=False)
        held_out = nonconformity(scores[n_cal:], truth[n_cal:]) <= cal.threshold  # the intended one is in the set
        coverages.append(held_out.mean())
        if trial < 3:  # the per-example path agrees with the vectorised one
            assert evaluate(cal, list(scores[n_cal:]), truth[n_cal:])["coverage"] == pytest.approx(held_out.mean())
    mean = float(np.mean(coverages))  # standard error about 0.0015 here
    # marginal guarantee: 1 - eps <= coverage < 1 - eps + 1 / (n + 1), up to the sampling noise of the mean
    assert 1 - epsilon - 0.006 <= mean <= 1 - epsilon + 1 / (n_cal + 1) + 0.006, mean
    assert abs(mean - (1 - epsilon)) < 0.03  # the benchmark's target: within 3 points


def test_sets_shrink_as_epsilon_grows_and_informative_scores_give_singletons() -> None:
    rng = np.random.default_rng(1)
    scores, truth = _synthetic(rng, 2000, k=4, concentration=0.3)
    sizes = [evaluate(ConformalCalibrator.fit(list(scores[:1000]), truth[:1000], e), list(scores[1000:]), truth[1000:])["mean_set_size"] for e in (0.05, 0.1, 0.2)]
    assert sizes[0] >= sizes[1] >= sizes[2] and sizes[0] > 1.0
    # a confident, correct scorer: almost every set is the top interpretation alone
    sharp = np.eye(4)[truth] * 0.97 + 0.01
    result = evaluate(ConformalCalibrator.fit(list(sharp[:1000]), truth[:1000], 0.1), list(sharp[1000:]), truth[1000:])
    assert result["singleton_rate"] == 1.0 and result["coverage"] == 1.0


def test_finite_sample_rank_and_the_too_few_examples_case() -> None:
    assert quantile_rank(9, 0.1) == 9  # (9 + 1) * 0.9 = 9 exactly, despite float error
    assert quantile_rank(19, 0.05) == 19 and quantile_rank(100, 0.1) == 91
    s = np.linspace(0.0, 0.8, 9)
    assert conformal_threshold(s, 0.1) == pytest.approx(0.8)  # rank 9 of 9: the largest
    assert math.isinf(conformal_threshold(s[:8], 0.1))  # rank ceil(9 * 0.9) = 9 > 8
    assert math.isinf(conformal_threshold(np.array([0.3]), 0.2))  # n = 1: rank 2 > 1
    assert conformal_threshold(np.array([0.3, 0.1, 0.2, 0.0]), 0.5) == pytest.approx(0.2)  # rank ceil(2.5) = 3
    cal = ConformalCalibrator.fit([np.array([0.6, 0.4])], [0], 0.1)
    assert math.isinf(cal.threshold) and list(cal.predict([0.9, 0.05, 0.05])) == [0, 1, 2]  # set = all


def test_prediction_sets() -> None:
    assert list(prediction_set([0.7, 0.2, 0.1], 0.5)) == [0]
    assert list(prediction_set([0.5, 0.3, 0.2], 0.85)) == [0, 1, 2]
    assert list(prediction_set([0.4, 0.35, 0.25], 0.1)) == [0]  # never empty by default: the top one stays
    assert list(prediction_set([0.4, 0.35, 0.25], 0.1, nonempty=False)) == []
    # membership uses the same arithmetic as calibration, so the calibration example at the threshold is kept
    scores = [0.1 + 0.2, 0.7]
    cal = ConformalCalibrator.fit([scores], [0], 0.5)
    assert 0 in cal.predict(scores)


def test_round_trip_and_validation() -> None:
    cal = ConformalCalibrator.fit([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]], [0, 1, 0], 0.3)
    assert ConformalCalibrator.from_dict(cal.to_dict()) == cal
    inf = ConformalCalibrator.fit([[0.8, 0.2]], [0], 0.3)
    assert inf.to_dict()["threshold"] is None and ConformalCalibrator.from_dict(inf.to_dict()) == inf
    with pytest.raises(ConfigError, match="epsilon"):
        ConformalCalibrator.fit([[1.0]], [0], 0.0)
    with pytest.raises(InputError, match="out of range"):
        nonconformity([[0.5, 0.5]], [2])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        nonconformity([[1.5, -0.5]], [0])
    with pytest.raises(InputError, match="one true index"):
        nonconformity([[0.5, 0.5]], [])
    assert list(nonconformity([[0.5, 0.5], [0.9, 0.05, 0.05]], [1, 0])) == pytest.approx([0.5, 0.1])
    assert list(nonconformity(np.array([[0.5, 0.5], [0.9, 0.1]]), [1, 0])) == pytest.approx([0.5, 0.1])
    with pytest.raises(InputError, match="out of range"):
        nonconformity(np.array([[0.5, 0.5]]), [2])
