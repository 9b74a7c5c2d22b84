"""Normalisation of actions (and proprio) with OpenVLA's 1st/99th-percentile bounds (spec section 8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from clearvla.errors import InputError, UnnormKeyError

_EPS = 1e-8


@dataclass(frozen=True)
class NormStats:
    """Statistics of one stream (`action` or `proprio`) of one dataset, all [D] float64.

    mask[d] false leaves dimension d untouched (OpenVLA's gripper). Dimensions with min == max
    normalise to 0 (they carry no information).
    """

    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    min: np.ndarray | None = None
    max: np.ndarray | None = None

    @classmethod
    def from_dict(cls, stats: Mapping[str, Any], where: str = "norm_stats") -> "NormStats":
        """From the JSON form `{"q01": [...], "q99": [...], "mask": [...]?, "mean": ..., ...}`."""
        try:
            q01 = np.asarray(stats["q01"], dtype=np.float64)
            q99 = np.asarray(stats["q99"], dtype=np.float64)
        except KeyError as e:
            raise InputError(f"{where} lacks field {e.args[0]!r} (needs q01 and q99)") from None
        if q01.shape != q99.shape or q01.ndim != 1:
            raise InputError(f"{where}: q01 {q01.shape} and q99 {q99.shape} must be equal 1-D shapes")
        mask = np.asarray(stats.get("mask", np.ones_like(q01, dtype=bool)), dtype=bool)
        if mask.shape != q01.shape:
            raise InputError(f"{where}: mask has shape {mask.shape}, expected {q01.shape}")

        def optional(name: str) -> np.ndarray | None:
            return None if stats.get(name) is None else np.asarray(stats[name], dtype=np.float64)

        return cls(q01, q99, mask, optional("mean"), optional("std"), optional("min"), optional("max"))

    def to_dict(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for name in ("mean", "std", "max", "min", "q01", "q99"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.tolist()
        out["mask"] = self.mask.tolist()
        return out

    @property
    def dim(self) -> int:
        return len(self.q01)

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1:] != (self.dim,):
            raise InputError(f"expected [..., {self.dim}] values to (un)normalise, got shape {x.shape}")
        return x

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Raw [..., D] -> [-1, 1] where masked; constant dims (min == max, else q01 == q99) -> 0."""
        x = self._check(x)
        scaled = np.clip(2.0 * (x - self.q01) / (self.q99 - self.q01 + _EPS) - 1.0, -1.0, 1.0)
        out = np.where(self.mask, scaled, x)
        lo, hi = (self.min, self.max) if self.min is not None and self.max is not None else (self.q01, self.q99)
        return np.where(lo == hi, 0.0, out)

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        """[-1, 1] [..., D] -> raw units where masked; unmasked dims pass through."""
        x = self._check(x)
        return np.where(self.mask, 0.5 * (x + 1.0) * (self.q99 - self.q01) + self.q01, x)


def select_stats(norm_stats: Mapping[str, Any], unnorm_key: str | None) -> str:
    """Resolve which dataset key to use. None is valid only with exactly one key."""
    keys = sorted(norm_stats)
    if not keys:
        raise UnnormKeyError("this checkpoint has no norm_stats, so actions cannot be un-normalised")
    if unnorm_key is None:
        if len(keys) > 1:
            raise UnnormKeyError(f"the checkpoint has {len(keys)} normalisation keys; pass unnorm_key, one of: {', '.join(keys)}")
        return keys[0]
    if unnorm_key not in norm_stats:
        raise UnnormKeyError(f"unknown unnorm_key {unnorm_key!r}; available: {', '.join(keys)}")
    return unnorm_key


def stream_stats(norm_stats: Mapping[str, Any], unnorm_key: str | None, stream: str = "action") -> NormStats:
    """The NormStats of one stream ("action" or "proprio") for a dataset key of an OpenVLA `norm_stats` dict."""
    key = select_stats(norm_stats, unnorm_key)
    if stream not in norm_stats[key]:
        raise InputError(f"norm_stats[{key!r}] has no {stream!r} statistics; it has: {', '.join(sorted(norm_stats[key]))}")
    return NormStats.from_dict(norm_stats[key][stream], where=f"norm_stats[{key!r}][{stream!r}]")


def action_stats(norm_stats: Mapping[str, Any], unnorm_key: str | None) -> NormStats:
    """The action NormStats for a dataset key of an OpenVLA `norm_stats` dict."""
    return stream_stats(norm_stats, unnorm_key, "action")
