"""Shared fixtures: tiny models and checkpoints built in seconds, never downloaded."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, before anything imports mujoco

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # tests run under pytest-xdist on 2 cores

WORKCELL_STATS = {
    "workcell": {
        "action": {
            "q01": [-0.02, -0.02, -0.02, -0.1, -0.1, -0.1, 0.0],
            "q99": [0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0],
            "mask": [True] * 6 + [False],
        },
        "num_transitions": 100,
        "num_trajectories": 4,
    }
}


@pytest.fixture(scope="session")
def tiny_vla():
    """A random-initialised tiny VLA (224 px, fused backbones) with one normalisation key."""
    from clearvla.models.vla import VLA

    return VLA.from_config("tiny", seed=0, norm_stats=WORKCELL_STATS).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_vla, tmp_path_factory):
    """The tiny VLA saved in sharded OpenVLA layout."""
    return tiny_vla.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny", max_shard_size="1MB")


@pytest.fixture
def rgb_image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(180, 240, 3), dtype=np.uint8)
