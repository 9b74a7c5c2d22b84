"""Robot safety at the server edge: per-robot action limits, a workspace box, and request deadlines.

Limits act on OpenVLA's end-effector delta action `[dx, dy, dz, droll, dpitch, dyaw, gripper]` (metres and
radians per control step). They are configured per robot, in a YAML or JSON file (`clearvla serve --limits`):

    default: ur5                      # used when a request names no robot (optional with one robot)
    robots:
      ur5:
        max_translation: 0.05         # metres per step: the norm of (dx, dy, dz) is scaled down to this
        max_rotation: 0.25            # radians per step: the norm of (droll, dpitch, dyaw) is scaled down to this
        workspace:                    # end-effector box in the robot's base frame, metres
          low: [-0.4, -0.6, 0.02]
          high: [0.6, 0.6, 0.8]

Scaling a whole vector keeps the direction of motion. The workspace box needs the end effector's current
position, read from the request's `proprio` (its first three entries, x y z in metres); the translation is
clipped so that the next position stays in the box, then limited to `max_translation`. Because the box is
convex, the limited step still ends inside it whenever the arm starts inside. A chunk of K actions (chunk models)
is limited step by step: each step's start position is the previous one moved by the previous limited step, so
the whole chunk, executed open loop, stays in the box.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from clearvla.errors import ConfigError
from clearvla.serve.errors import DeadlineExceeded, RequestError

TRANSLATION = slice(0, 3)
ROTATION = slice(3, 6)
MIN_ACTION_DIM = 6  # the limits address dims 0..5


@dataclass(frozen=True)
class RobotLimits:
    """Limits of one robot. None disables a limit.

    max_translation: metres per step, bound on ||(dx, dy, dz)||. max_rotation: radians per step, bound on
    ||(droll, dpitch, dyaw)||. workspace_low / workspace_high: [3] metres, the end-effector box.
    """

    max_translation: float | None = None
    max_rotation: float | None = None
    workspace_low: tuple[float, float, float] | None = None
    workspace_high: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("max_translation", "max_rotation"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0 (metres or radians per step), got {value!r}")
        if (self.workspace_low is None) != (self.workspace_high is None):
            raise ConfigError("workspace needs both low and high corners")
        if self.workspace_low is not None:
            low, high = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
            if low.shape != (3,) or high.shape != (3,) or not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise ConfigError(f"workspace low/high must be 3 finite numbers (x, y, z metres), got {self.workspace_low}, {self.workspace_high}")
            if (low > high).any():
                raise ConfigError(f"workspace low {list(low)} must be <= high {list(high)} on every axis")

    @property
    def has_workspace(self) -> bool:
        return self.workspace_low is not None

    @property
    def active(self) -> bool:
        return self.max_translation is not None or self.max_rotation is not None or self.has_workspace

    def apply(self, action: np.ndarray, ee_position: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """action [A >= 6] float64 (+ end-effector position [3] metres) -> (limited action [A], reasons).

        Reasons name each limit that changed the action: "workspace", "max_translation", "max_rotation"
        (and "outside_workspace" when the arm already starts outside the box). The input is not modified.
        """
        assert action.ndim == 1 and action.shape[0] >= MIN_ACTION_DIM, f"limits need an action [>= 6], got {action.shape}"
        out = np.array(action, dtype=np.float64)
        reasons: list[str] = []
        if self.has_workspace:
            if ee_position is None:
                raise RequestError("this robot has a workspace box: send 'proprio' whose first 3 entries are the "
                                   "end-effector position x, y, z in metres", field="proprio")
            low, high = np.asarray(self.workspace_low), np.asarray(self.workspace_high)
            pos = np.asarray(ee_position, dtype=np.float64)
            if ((pos < low) | (pos > high)).any():
                reasons.append("outside_workspace")
            target = np.clip(pos + out[TRANSLATION], low, high)
            step = target - pos
            if not np.allclose(step, out[TRANSLATION], rtol=0.0, atol=1e-12):
                reasons.append("workspace")
                out[TRANSLATION] = step
        for name, dims, bound in (("max_translation", TRANSLATION, self.max_translation),
                                  ("max_rotation", ROTATION, self.max_rotation)):
            norm = float(np.linalg.norm(out[dims]))
            if bound is not None and norm > bound:
                out[dims] *= bound / norm
                reasons.append(name)
        return out, reasons

    def apply_chunk(self, actions: np.ndarray, ee_position: np.ndarray | None = None) -> tuple[np.ndarray, list[list[str]]]:
        """actions [K, A >= 6] float64, executed in order from `ee_position` [3] metres -> (limited [K, A], the
        reasons of each step). Step k starts where the limited steps 0..k-1 would leave the end effector."""
        assert actions.ndim == 2, f"a chunk is [K, A], got {actions.shape}"
        position = None if ee_position is None else np.asarray(ee_position, dtype=np.float64)
        limited, reasons = [], []
        for action in actions:
            out, why = self.apply(action, position)
            limited.append(out)
            reasons.append(why)
            if position is not None:
                position = position + out[TRANSLATION]
        return np.stack(limited), reasons

    def to_dict(self) -> dict[str, Any]:
        workspace = None if not self.has_workspace else {"low": list(self.workspace_low), "high": list(self.workspace_high)}
        return {"max_translation": self.max_translation, "max_rotation": self.max_rotation, "workspace": workspace}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str) -> "RobotLimits":
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a mapping with max_translation / max_rotation / workspace")
        unknown = sorted(set(raw) - {"max_translation", "max_rotation", "workspace"})
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: max_translation, max_rotation, workspace")
        box = raw.get("workspace")
        if box is not None and (not isinstance(box, Mapping) or set(box) != {"low", "high"}):
            raise ConfigError(f"{where}.workspace must be {{low: [x, y, z], high: [x, y, z]}} in metres")
        try:
            return cls(raw.get("max_translation"), raw.get("max_rotation"),
                       None if box is None else tuple(float(v) for v in box["low"]),
                       None if box is None else tuple(float(v) for v in box["high"]))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None


@dataclass(frozen=True)
class SafetyConfig:
    """Limits per robot name, and which robot a request that names none gets (None: it must name one, unless
    there is exactly one robot). No robots: actions pass through unlimited."""

    robots: Mapping[str, RobotLimits] = field(default_factory=dict)
    default: str | None = None

    def __post_init__(self) -> None:
        if self.default is not None and self.default not in self.robots:
            raise ConfigError(f"default robot {self.default!r} is not among the robots: {sorted(self.robots)}")

    @classmethod
    def from_dict(cls, raw: Any, where: str = "limits") -> "SafetyConfig":
        if not isinstance(raw, Mapping) or not isinstance(raw.get("robots"), Mapping) or set(raw) - {"robots", "default"}:
            raise ConfigError(f"{where} must be a mapping {{robots: {{name: limits}}, default: name}}")
        robots = {str(name): RobotLimits.from_dict(spec, f"{where}: robots.{name}") for name, spec in raw["robots"].items()}
        return cls(robots, raw.get("default"))

    @classmethod
    def from_file(cls, path: Path) -> "SafetyConfig":
        """Read a YAML (.yaml/.yml) or JSON limits file."""
        if not path.is_file():
            raise ConfigError(f"limits file {path} does not exist")
        text = path.read_text()
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(text)
            else:
                raw = json.loads(text)
        except Exception as e:  # yaml.YAMLError, json.JSONDecodeError
            raise ConfigError(f"cannot parse limits file {path}: {e}") from None
        return cls.from_dict(raw, where=str(path))

    def resolve(self, robot: str | None) -> tuple[str | None, RobotLimits | None]:
        """The (name, limits) a request gets; RequestError for an unknown robot or a missing one."""
        if robot is None:
            if not self.robots:
                return None, None
            if self.default is None and len(self.robots) > 1:
                raise RequestError(f"name a robot: one of {sorted(self.robots)}", field="robot")
            robot = self.default or next(iter(self.robots))
        if robot not in self.robots:
            available = sorted(self.robots) or "none (the server has no --limits)"
            raise RequestError(f"unknown robot {robot!r}; configured robots: {available}", field="robot")
        return robot, self.robots[robot]

    def to_dict(self) -> dict[str, Any]:
        return {"default": self.default, "robots": {name: limits.to_dict() for name, limits in self.robots.items()}}


# --- deadlines ---------------------------------------------------------------------------------------------
def resolve_deadline(
    received: float,
    deadline_ms: float | None,
    deadline_unix: float | None,
    default_ms: float | None,
    wall_now: float | None = None,
) -> float | None:
    """The monotonic time after which a request's action is stale, or None for no deadline.

    deadline_ms: milliseconds from the server receiving the request (immune to clock skew). deadline_unix:
    an absolute time in Unix seconds on the client's clock (catches network delay when clocks are synced).
    default_ms: the server's `--deadline-ms`, used when the request gives neither. The earliest one wins.
    """
    wall_now = time.time() if wall_now is None else wall_now
    candidates = []
    if deadline_ms is not None:
        candidates.append(received + deadline_ms / 1000.0)
    if deadline_unix is not None:
        candidates.append(received + (deadline_unix - wall_now))
    if not candidates and default_ms is not None:
        candidates.append(received + default_ms / 1000.0)
    return min(candidates) if candidates else None


def check_deadline(deadline: float | None, received: float, stage: str, now: float | None = None) -> None:
    """Raise DeadlineExceeded when `deadline` (monotonic) has passed; `stage` says where it was caught."""
    if deadline is None:
        return
    now = time.monotonic() if now is None else now
    if now > deadline:
        waited = (now - received) * 1000.0
        budget = (deadline - received) * 1000.0
        raise DeadlineExceeded(f"deadline passed {stage} ({waited:.1f} ms since the request arrived, budget "
                               f"{budget:.1f} ms); the request was dropped, not executed late")
