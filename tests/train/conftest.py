"""Shared fixtures of the training tests."""

from __future__ import annotations

import numpy as np
import pytest

from clearvla.data.stats import compute_statistics


@pytest.fixture(scope="module")
def norm_stats():
    """Statistics of one dataset "cell": 7-D actions and a 7-D robot state."""
    rng = np.random.default_rng(0)
    return {"cell": compute_statistics(rng.normal(0, 0.01, (64, 7)), rng.normal(0, 1, (64, 7)), 4)}
