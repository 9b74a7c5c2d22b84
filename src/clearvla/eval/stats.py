"""Binomial success statistics."""

from __future__ import annotations

import math


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a success rate (95 % for z = 1.96); (0, 1) when there are no trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def exact_mcnemar(wins: int, losses: int) -> float:
    """Two-sided exact McNemar test on paired outcomes: `wins` pairs where only the new condition succeeded and
    `losses` where only the baseline did (pairs that agree carry no information). The p-value of seeing a split at
    least this uneven if either condition were equally likely to win a discordant pair; 1.0 with no such pairs."""
    if wins < 0 or losses < 0:
        raise ValueError(f"counts must be >= 0, got {wins}, {losses}")
    n = wins + losses
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)
