"""benchmarks/input_ablation.py's gripper check: which frames count as a grasp decision, and how they are scored."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its neighbour `common`
    try:
        spec = importlib.util.spec_from_file_location("input_ablation", BENCHMARKS / "input_ablation.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_gripper_agreement_scores_only_frames_with_fully_open_jaws(bench) -> None:
    #                     open jaws, label close | open, label open | closing jaws | closed, holding
    state = np.array([1.0, 1.0, 0.95, 1.0, 1.0, 0.3, -1.0])
    target = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    predicted = np.array([0.1, 0.9, 0.7, 0.8, 0.2, 1.0, 1.0])  # the last two are wrong but not grasp decisions
    assert bench.gripper_agreement(predicted, target, state) == {"closes": [1, 3], "stays_open": [1, 2]}
