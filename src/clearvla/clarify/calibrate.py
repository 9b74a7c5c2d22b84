"""Split-conformal calibration of when to ask (KnowNo, Ren et al., CoRL 2023).

Each calibration example is a score vector over its K interpretations ([K] in [0, 1], K may differ between
examples) and the index of the intended one. With nonconformity s_i = 1 - score of the intended interpretation
and n examples, the threshold q is the ceil((n + 1)(1 - epsilon))-th smallest s_i; the prediction set of a new
example is every interpretation whose nonconformity 1 - score is <= q. If the calibration and test examples are
exchangeable, the set contains the intended interpretation with probability >= 1 - epsilon (and, without ties,
< 1 - epsilon + 1 / (n + 1)). When ceil((n + 1)(1 - epsilon)) > n there are too few examples for that level:
q = inf and every set is every interpretation. One element in the set -> act; more -> ask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from clearvla.errors import ConfigError, InputError

ScoreVector = np.ndarray  # [K] float in [0, 1]


def _check_epsilon(epsilon: float) -> float:
    if not isinstance(epsilon, (int, float)) or not 0.0 < float(epsilon) < 1.0:
        raise ConfigError(f"epsilon (the allowed miss rate) must be in (0, 1), got {epsilon!r}")
    return float(epsilon)


def _check_scores(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)) or s.min() < 0.0 or s.max() > 1.0:
        raise InputError(f"scores must be a non-empty 1-D array of numbers in [0, 1], got {scores!r}")
    return s


def nonconformity(scores: Sequence[Sequence[float] | np.ndarray], true_index: Sequence[int]) -> np.ndarray:
    """[N] 1 - score of the intended interpretation, one per calibration example. `scores` is a list of [K_i]
    vectors, or one [N, K] array when every example has K interpretations."""
    if len(scores) != len(true_index) or len(scores) == 0:
        raise InputError(f"need one true index per score vector and at least one example, got {len(scores)} and {len(true_index)}")
    if isinstance(scores, np.ndarray) and scores.ndim == 2:  # fast path, same checks
        t = np.asarray(true_index)
        if not np.all(np.isfinite(scores)) or scores.min() < 0.0 or scores.max() > 1.0:
            raise InputError("scores must be numbers in [0, 1]")
        if t.min() < 0 or t.max() >= scores.shape[1]:
            raise InputError(f"true index out of range for {scores.shape[1]} interpretations")
        return 1.0 - scores[np.arange(len(t)), t]
    out = np.empty(len(scores))
    for i, (s, t) in enumerate(zip(scores, true_index)):
        s = _check_scores(s)
        if not 0 <= int(t) < s.size:
            raise InputError(f"example {i}: true index {t} out of range for {s.size} interpretations")
        out[i] = 1.0 - s[int(t)]
    return out


def quantile_rank(n: int, epsilon: float) -> int:
    """ceil((n + 1)(1 - epsilon)): the 1-based rank of the threshold among n sorted nonconformity scores. The
    product is rounded to 9 decimals first so that e.g. n = 9, epsilon = 0.1 gives 9, not 10 from float error."""
    return math.ceil(round((n + 1) * (1.0 - _check_epsilon(epsilon)), 9))


def conformal_threshold(nonconformity_scores: np.ndarray, epsilon: float) -> float:
    """q: the ceil((n + 1)(1 - epsilon))-th smallest nonconformity score, or inf when that rank exceeds n."""
    s = np.sort(np.asarray(nonconformity_scores, dtype=np.float64))
    if s.ndim != 1 or s.size == 0:
        raise InputError("need at least one calibration nonconformity score")
    k = quantile_rank(s.size, epsilon)
    return math.inf if k > s.size else float(s[k - 1])


def prediction_set(scores: Sequence[float] | np.ndarray, threshold: float, *, nonempty: bool = True) -> np.ndarray:
    """Indices (ascending) of the interpretations with 1 - score <= threshold. With `nonempty` the top-scored
    interpretation is always included (this only adds coverage; KnowNo's sets can otherwise come back empty)."""
    s = _check_scores(scores)
    keep = 1.0 - s <= threshold
    if nonempty and not keep.any():
        keep[int(np.argmax(s))] = True
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class ConformalCalibrator:
    """A fitted threshold: `epsilon` the allowed miss rate, `threshold` q (inf: too few examples, always the full
    set), `n` the number of calibration examples. Serialises to JSON via to_dict / from_dict."""

    epsilon: float
    threshold: float
    n: int
    nonempty: bool = True

    @classmethod
    def fit(
        cls,
        scores: Sequence[Sequence[float] | np.ndarray],
        true_index: Sequence[int],
        epsilon: float,
        *,
        nonempty: bool = True,
    ) -> ConformalCalibrator:
        """Calibrate on examples: `scores[i]` [K_i] confidences, `true_index[i]` the intended interpretation."""
        s = nonconformity(scores, true_index)
        return cls(_check_epsilon(epsilon), conformal_threshold(s, epsilon), int(s.size), nonempty)

    def predict(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Indices of the interpretations in the prediction set of one example."""
        return prediction_set(scores, self.threshold, nonempty=self.nonempty)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["threshold"] = None if math.isinf(self.threshold) else self.threshold  # JSON has no inf
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConformalCalibrator:
        threshold = math.inf if d["threshold"] is None else float(d["threshold"])
        return cls(_check_epsilon(d["epsilon"]), threshold, int(d["n"]), bool(d.get("nonempty", True)))


def evaluate(
    calibrator: ConformalCalibrator,
    scores: Sequence[Sequence[float] | np.ndarray],
    true_index: Sequence[int],
) -> dict[str, float]:
    """On held-out examples: coverage (fraction of sets holding the intended interpretation), mean set size, and
    the fraction of singleton sets (episodes acted on without asking)."""
    nonconformity(scores, true_index)  # validates
    sets = [calibrator.predict(s) for s in scores]
    return {
        "coverage": float(np.mean([int(t) in s for s, t in zip(sets, true_index)])),
        "mean_set_size": float(np.mean([len(s) for s in sets])),
        "singleton_rate": float(np.mean([len(s) == 1 for s in sets])),
        "n": float(len(sets)),
    }
