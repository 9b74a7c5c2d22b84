"""benchmarks/input_ablation.py's gripper check: which frames count as a grasp decision, and how they are scored."""

from __future__ import annotations

import numpy as np

BENCHMARK = "input_ablation"  # the `bench` fixture (conftest.py) imports benchmarks/input_ablation.py


def test_gripper_agreement_scores_only_frames_with_fully_open_jaws(bench) -> None:
    # three frames with open jaws and a close label (one predicted right), two with open jaws kept open (one right),
    # then jaws half closed and jaws closed on a part, predicted wrong but no grasp decisions
    state = np.array([1.0, 1.0, 0.95, 1.0, 1.0, 0.3, -1.0])
    target = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    predicted = np.array([0.1, 0.9, 0.7, 0.8, 0.2, 1.0, 1.0])
    assert bench.gripper_agreement(predicted, target, state) == {"closes": [1, 3], "stays_open": [1, 2]}
