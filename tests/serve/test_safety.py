"""Per-robot limits, the workspace box and deadlines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clearvla.errors import ConfigError
from clearvla.serve.errors import DeadlineExceeded, RequestError
from clearvla.serve.safety import RobotLimits, SafetyConfig, check_deadline, resolve_deadline

ACTION = np.array([0.03, 0.04, 0.0, 0.3, 0.0, 0.4, 1.0])  # |translation| = 0.05 m, |rotation| = 0.5 rad


def test_step_limits_scale_the_vector_and_keep_its_direction():
    out, reasons = RobotLimits(max_translation=0.01, max_rotation=0.1).apply(ACTION)
    np.testing.assert_allclose(out, [0.006, 0.008, 0.0, 0.06, 0.0, 0.08, 1.0])
    assert reasons == ["max_translation", "max_rotation"]
    assert ACTION[0] == 0.03  # the input is untouched
    same, none = RobotLimits(max_translation=1.0, max_rotation=1.0).apply(ACTION)
    np.testing.assert_array_equal(same, ACTION)
    assert none == []


def test_workspace_keeps_the_next_position_in_the_box():
    box = RobotLimits(workspace_low=(-0.5, -0.5, 0.0), workspace_high=(0.5, 0.5, 0.5))
    out, reasons = box.apply(ACTION, ee_position=np.array([0.49, 0.0, 0.2]))
    np.testing.assert_allclose(out[:3], [0.01, 0.04, 0.0])
    np.testing.assert_array_equal(out[3:], ACTION[3:])
    assert reasons == ["workspace"]
    inside, none = box.apply(ACTION, ee_position=np.zeros(3) + 0.1)
    np.testing.assert_array_equal(inside, ACTION)
    assert none == []
    with pytest.raises(RequestError, match="proprio"):
        box.apply(ACTION, ee_position=None)


def test_a_chunk_is_limited_step_by_step_from_where_the_previous_step_ends():
    """Executed open loop, every step of a limited chunk stays in the box: step k starts at the chained position."""
    box = RobotLimits(max_translation=0.04, workspace_low=(-0.5, -0.5, 0.0), workspace_high=(0.5, 0.5, 0.5))
    chunk = np.tile(ACTION, (4, 1))
    start = np.array([0.42, 0.0, 0.2])
    out, reasons = box.apply_chunk(chunk, start)
    positions = start + np.cumsum(out[:, :3], axis=0)
    assert (positions[:, 0] <= 0.5 + 1e-12).all()
    unchained = start[0] + 4 * box.apply(ACTION, start)[0][0]
    assert unchained > 0.5  # limiting every step from the start position alone would leave the box
    assert reasons[0] == ["max_translation"] and "workspace" in reasons[-1]
    assert out.shape == chunk.shape and (chunk == ACTION).all()  # the input is untouched
    first, why = box.apply(ACTION, start)
    np.testing.assert_array_equal(out[0], first)  # step 0 is exactly the single-action limit
    assert why == reasons[0]


def test_workspace_then_step_limit_ends_inside_the_box():
    limits = RobotLimits(max_translation=0.02, workspace_low=(0, 0, 0), workspace_high=(1, 1, 1))
    rng = np.random.default_rng(0)
    for _ in range(200):
        pos = rng.uniform(0, 1, 3)
        action = np.concatenate([rng.normal(0, 0.5, 6), [1.0]])
        out, _ = limits.apply(action, pos)
        assert np.linalg.norm(out[:3]) <= 0.02 + 1e-12
        assert ((pos + out[:3] >= -1e-12) & (pos + out[:3] <= 1 + 1e-12)).all()
    _, reasons = limits.apply(ACTION, np.array([2.0, 0.5, 0.5]))
    assert reasons[0] == "outside_workspace"


def test_config_from_yaml_and_json_files(tmp_path):
    text = """
default: ur5
robots:
  ur5: {max_translation: 0.05, max_rotation: 0.25, workspace: {low: [-0.4, -0.6, 0.02], high: [0.6, 0.6, 0.8]}}
  sim: {}
"""
    (tmp_path / "limits.yaml").write_text(text)
    config = SafetyConfig.from_file(tmp_path / "limits.yaml")
    assert config.resolve(None)[0] == "ur5" and config.resolve("sim")[1] == RobotLimits()
    assert config.robots["ur5"].workspace_high == (0.6, 0.6, 0.8)
    (tmp_path / "limits.json").write_text(json.dumps(config.to_dict()))
    assert SafetyConfig.from_file(tmp_path / "limits.json") == config
    with pytest.raises(RequestError, match=r"unknown robot 'ur3'; configured robots: \['sim', 'ur5'\]"):
        config.resolve("ur3")
    assert SafetyConfig().resolve(None) == (None, None)
    with pytest.raises(RequestError, match="name a robot"):
        SafetyConfig({"a": RobotLimits(), "b": RobotLimits()}).resolve(None)


@pytest.mark.parametrize("raw, words", [
    ({"robots": {"a": {"max_translation": -1}}}, "finite number >= 0"),
    ({"robots": {"a": {"max_translation": float("nan")}}}, "finite number >= 0"),
    ({"robots": {"a": {"max_speed": 1}}}, "unknown field"),
    ({"robots": {"a": {"workspace": {"low": [0, 0, 0]}}}}, "workspace"),
    ({"robots": {"a": {"workspace": {"low": [1, 0, 0], "high": [0, 1, 1]}}}}, "<= high"),
    ({"robots": {"a": {"workspace": {"low": [0, 0], "high": [1, 1]}}}}, "3 finite numbers"),
    ({"robots": {"a": {}}, "default": "b"}, "default robot 'b'"),
    ({"robot": {}}, "mapping"),
])
def test_bad_limits_are_config_errors(raw, words):
    with pytest.raises(ConfigError, match=words):
        SafetyConfig.from_dict(raw)


def test_deadlines():
    assert resolve_deadline(10.0, None, None, None) is None
    assert resolve_deadline(10.0, 200.0, None, 50.0) == pytest.approx(10.2)
    assert resolve_deadline(10.0, None, None, 50.0) == pytest.approx(10.05)
    # an absolute deadline 30 ms ahead on the client's clock, tighter than deadline_ms
    assert resolve_deadline(10.0, 200.0, 1000.03, None, wall_now=1000.0) == pytest.approx(10.03)
    check_deadline(10.1, 10.0, "queued", now=10.05)
    with pytest.raises(DeadlineExceeded, match="dropped, not executed late"):
        check_deadline(10.1, 10.0, "queued", now=10.2)
