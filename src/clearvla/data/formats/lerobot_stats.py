"""Statistics in LeRobot v3.0's layout, as lerobot 0.6.1's writer produces them.

Per episode, meta/episodes has `stats/<feature>/<stat>` columns for every numeric feature (action, state, images,
timestamp and the index columns): min, max, mean, std (population), count and the quantiles q01, q10, q50, q90, q99.
meta/stats.json holds the same statistics over the whole dataset. Image statistics are per channel, in [0, 1], in
LeRobot's [3, 1, 1] layout, over the frames and pixels LeRobot samples (at most ~100 frames of each episode, all
pixels below 300 px).
Attention masks get none: 1,024 dimensions per camera per episode would outweigh the rest of meta/ and nothing
normalises them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


def vector_stats(x: np.ndarray, quantiles: bool = True) -> dict[str, list]:
    """[N, D] -> min, max, mean, std (population), count and (with `quantiles`) q01..q99, per dimension."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    out = {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(), "std": x.std(0).tolist(),
           "count": [len(x)]}
    if quantiles:
        out.update({name: np.quantile(x, q, axis=0).tolist() for name, q in QUANTILES.items()})
    return out


def sampled_frames(n: int) -> np.ndarray:
    """Indices of the frames LeRobot samples for image statistics of an n-frame episode (all below 100; then
    n ** 0.75, at most 10,000), evenly spaced."""
    count = n if n < 100 else max(100, min(int(n**0.75), 10_000))
    return np.round(np.linspace(0, n - 1, count)).astype(int)


def _as_c11(values: np.ndarray) -> list:
    return [[[float(c)]] for c in values]


def _downsampled(frames: np.ndarray) -> np.ndarray:
    """LeRobot's `auto_downsample_height_width`: frames of 300 px or more keep every k-th pixel, ~150 px left."""
    h, w = frames.shape[1:3]
    if max(h, w) < 300:
        return frames
    k = int(w / 150) if w > h else int(h / 150)
    return frames[:, ::k, ::k]


def image_stats(frames: np.ndarray) -> dict[str, list]:
    """[T, H, W, 3] uint8 frames of one episode -> per-channel statistics in [0, 1], each [3, 1, 1], of the pixels
    LeRobot samples; count is the number of frames sampled. Exact, from each channel's 256-bin histogram."""
    sample = frames[sampled_frames(len(frames))]
    pixels = _downsampled(sample).reshape(-1, 3)
    n = len(pixels)
    levels = np.arange(256, dtype=np.float64)
    counts = np.stack([np.bincount(pixels[:, c], minlength=256) for c in range(3)]).astype(np.float64)  # [3, 256]
    mean = counts @ levels / n
    std = np.sqrt(np.maximum(counts @ levels**2 / n - mean**2, 0.0))
    cdf = np.cumsum(counts, axis=1)

    def quantile(q: float) -> np.ndarray:  # numpy's default (linear between order statistics), per channel
        position = q * (n - 1)
        below, above = (np.array([np.searchsorted(cdf[c], r, side="right") for c in range(3)])
                        for r in (np.floor(position), np.ceil(position)))
        return below + (position - np.floor(position)) * (above - below)

    present = counts > 0
    low, high = present.argmax(1), 255 - present[:, ::-1].argmax(1)
    out = {"min": _as_c11(low / 255), "max": _as_c11(high / 255), "mean": _as_c11(mean / 255), "std": _as_c11(std / 255),
           "count": [len(sample)]}
    out.update({name: _as_c11(quantile(q) / 255) for name, q in QUANTILES.items()})
    return out


def aggregate(stats: Sequence[dict[str, list]]) -> dict[str, list]:
    """Statistics of a union from those of its parts, as LeRobot's `aggregate_feature_stats` computes them: min of
    mins, max of maxes, count-weighted mean, pooled std, count-weighted mean of each quantile."""
    assert stats, "aggregate needs at least one set of statistics"
    counts = np.array([s["count"][0] for s in stats], dtype=np.float64)
    means = np.array([s["mean"] for s in stats])
    weights = counts.reshape(-1, *([1] * (means.ndim - 1)))
    total = counts.sum()
    mean = (means * weights).sum(0) / total
    variance = ((np.array([s["std"] for s in stats]) ** 2 + (means - mean) ** 2) * weights).sum(0) / total
    out = {"min": np.min([s["min"] for s in stats], axis=0).tolist(), "max": np.max([s["max"] for s in stats], axis=0).tolist(),
           "mean": mean.tolist(), "std": np.sqrt(variance).tolist(), "count": [int(total)]}
    for name in QUANTILES:
        if all(name in s for s in stats):
            out[name] = ((np.array([s[name] for s in stats]) * weights).sum(0) / total).tolist()
    return out
