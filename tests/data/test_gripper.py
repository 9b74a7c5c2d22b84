"""Gripper conventions, unified to OpenVLA's 1 = open, 0 = closed."""

from __future__ import annotations

import numpy as np
import pytest

from clearvla.data import gripper
from clearvla.errors import ConfigError


def test_binarize_looks_ahead_through_intermediate_values():
    raw = np.array([1.0, 0.7, 0.3, 0.01, 0.0, 0.5, 0.97, 0.6])
    # 0.7, 0.3 take the next decided state (closed); 0.5 takes open; the trailing 0.6 keeps the last raw value
    np.testing.assert_allclose(gripper.binarize(raw), [1, 0, 0, 0, 0, 1, 1, 0.6], atol=1e-6)


def test_rel2abs_starts_opposite_to_the_first_command():
    np.testing.assert_array_equal(gripper.rel2abs(np.array([0, 1, 0, 0, -1, 0])), [1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(gripper.rel2abs(np.array([0, -1, 0, 1])), [0, 1, 1, 0])
    np.testing.assert_array_equal(gripper.rel2abs(np.zeros(3)), [1, 1, 1])  # no command: open throughout


@pytest.mark.parametrize(
    ("convention", "raw", "expected"),
    [
        ("open1", [1.2, 0.0, -0.1], [1.0, 0.0, 0.0]),
        ("close1", [1.0, 0.0], [0.0, 1.0]),
        ("signed_close1", [-1.0, 1.0, 0.0], [1.0, 0.0, 1.0]),
    ],
)
def test_absolute_conventions(convention, raw, expected):
    np.testing.assert_array_equal(gripper.to_openvla(np.array(raw), convention), expected)


def test_unknown_convention_lists_the_choices():
    with pytest.raises(ConfigError, match="open1"):
        gripper.to_openvla(np.zeros(2), "sideways")
