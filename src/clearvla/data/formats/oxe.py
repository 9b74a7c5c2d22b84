"""Per-dataset standardisation of Open X-Embodiment RLDS trajectories to OpenVLA's action and camera conventions.

Every standardised episode has a 7-D end-effector delta action `[dx, dy, dz, droll, dpitch, dyaw, gripper]` with
gripper 1 = open, 0 = closed, the primary camera as "image" (and "secondary_image" / "wrist_image" where the
dataset has them), and proprio in OpenVLA's `state_obs_keys` layout. Facts from OpenVLA's
`prismatic/vla/datasets/rlds/oxe/{transforms,configs}.py`:

| dataset | raw action | standardisation | cameras (raw key) | proprio [P] |
|---|---|---|---|---|
| `bridge_orig`, `bridge_dataset` | [7] xyz, rpy deltas; absolute continuous gripper, 1 = open | drop the first step (all-zero); binarize gripper; xyz/rpy relabelled as state[t+1] - state[t] (drops the last step) | image (image_0), secondary_image (image_1) | [8] state[:6], 0 pad, state[-1] |
| `fractal20220817_data` | world_vector [3], rotation_delta [3], gripper_closedness_action [1]: +1 close, -1 open, relative | concatenate; gripper `rel2abs` -> absolute, 1 = open | image | [8] base_pose_tool_reached [7], gripper_closed [1] |
| `libero_*` (`libero_spatial_no_noops`, ...) | [7] xyz, rpy deltas; gripper -1 = open, +1 = close | gripper 1 - clip(g, 0, 1) | image, wrist_image | [8] state[:6] (EEF pos, axis-angle), state[-2:] (fingers) |
| any other name | `action` tensor, or a world_vector / rotation_delta dict | kept as stored (logged as a warning) | every Image of `observation` | `observation/state` if present |
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from clearvla.data import gripper
from clearvla.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class Standardized:
    """Output of a standardisation: everything step-wise is already restricted to `keep` (a slice of raw steps)."""

    actions: np.ndarray  # [K, A] float32
    proprio: np.ndarray | None  # [K, P] float32
    cameras: dict[str, str]  # episode camera name -> raw observation key
    instruction: str
    keep: slice
    dropped_leading_zero: int = 0  # raw first steps removed as all-zero (Bridge)
    notes: dict[str, Any] = field(default_factory=dict)


def _first_text(values: Any) -> str:
    """First non-empty string of a per-step text feature (RLDS repeats the instruction on every step)."""
    if isinstance(values, str):
        return values
    for value in values if values is not None else []:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        if text.strip():
            return text
    return ""


def _require(traj: dict, *path: str) -> Any:
    node: Any = traj
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise DataError(f"missing feature steps/{'/'.join(path)}")
        node = node[key]
    return node


def _f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def bridge_orig(traj: dict) -> Standardized:
    raw = _f32(_require(traj, "action"))
    state = _f32(_require(traj, "observation", "state"))
    # Bridge's first step has an all-zero action; OpenVLA removes the first step unconditionally, and so do we.
    raw, state = raw[1:], state[1:]
    if len(raw) < 2:
        raise DataError(f"bridge episode has {len(raw)} steps after dropping the first; relabelling needs 2")
    grip = gripper.binarize(raw[:, -1])
    movement = state[1:, :6] - state[:-1, :6]  # OpenVLA's relabel_bridge_actions: achieved, not commanded, motion
    actions = np.concatenate([movement, grip[:-1, None]], axis=1)
    proprio = np.concatenate([state[:-1, :6], np.zeros((len(actions), 1), np.float32), state[:-1, -1:]], axis=1)
    cameras = {"image": "image_0"}
    if "image_1" in traj.get("observation", {}):
        cameras["secondary_image"] = "image_1"
    instruction = _first_text(traj.get("language_instruction"))
    return Standardized(actions, proprio, cameras, instruction, keep=slice(1, 1 + len(actions)), dropped_leading_zero=1)


def fractal(traj: dict) -> Standardized:
    act = _require(traj, "action")
    closedness = _f32(_require(traj, "action", "gripper_closedness_action")).reshape(len(act["world_vector"]), -1)[:, 0]
    actions = np.concatenate(
        [_f32(act["world_vector"]), _f32(act["rotation_delta"]), gripper.rel2abs(closedness)[:, None]], axis=1
    )
    obs = traj.get("observation", {})
    proprio = None
    if "base_pose_tool_reached" in obs and "gripper_closed" in obs:
        closed = _f32(obs["gripper_closed"]).reshape(len(actions), -1)
        proprio = np.concatenate([_f32(obs["base_pose_tool_reached"]), closed], axis=1)
    instruction = _first_text(obs.get("natural_language_instruction", traj.get("language_instruction")))
    return Standardized(actions, proprio, {"image": "image"}, instruction, slice(0, len(actions)))


def libero(traj: dict) -> Standardized:
    raw = _f32(_require(traj, "action"))
    actions = np.concatenate([raw[:, :6], gripper.to_openvla(raw[:, -1], "signed_close1")[:, None]], axis=1)
    obs = traj.get("observation", {})
    proprio = None
    if "state" in obs:
        state = _f32(obs["state"])
        proprio = np.concatenate([state[:, :6], state[:, -2:]], axis=1)
    cameras = {name: name for name in ("image", "wrist_image") if name in obs}
    return Standardized(actions, proprio, cameras, _first_text(traj.get("language_instruction")), slice(0, len(actions)))


def generic(traj: dict) -> Standardized:
    """Unknown dataset: keep its actions as they are (a flat `action` tensor, or an RT-1 style dict)."""
    act = _require(traj, "action")
    if isinstance(act, dict):
        parts = [act[k] for k in ("world_vector", "rotation_delta", "gripper_closedness_action") if k in act]
        if not parts:
            raise DataError(f"cannot build an action vector from action fields {sorted(act)}")
        n = len(parts[0])
        actions = np.concatenate([_f32(p).reshape(n, -1) for p in parts], axis=1)
    else:
        actions = _f32(act)
        actions = actions.reshape(len(actions), -1)
    obs = traj.get("observation", {})
    proprio = _f32(obs["state"]).reshape(len(actions), -1) if "state" in obs else None
    cameras = {name: name for name, value in obs.items() if hasattr(value, "decode_all")}  # rlds.EncodedImages
    instruction = _first_text(traj.get("language_instruction", obs.get("natural_language_instruction")))
    return Standardized(actions, proprio, cameras, instruction, slice(0, len(actions)))


STANDARDIZERS: dict[str, Callable[[dict], Standardized]] = {
    "bridge_orig": bridge_orig,
    "bridge_dataset": bridge_orig,
    "fractal20220817_data": fractal,
    "libero": libero,
    "generic": generic,
}


def standardizer_for(dataset_name: str, choice: str | None) -> tuple[str, Callable[[dict], Standardized]]:
    """(name, function) for `choice` ("auto": by dataset name; None: raw "generic")."""
    if choice is None:
        return "generic", generic
    if choice == "auto":
        if dataset_name in STANDARDIZERS:
            choice = dataset_name
        elif dataset_name.startswith("libero"):
            choice = "libero"
        else:
            log.warning("no standardisation known for RLDS dataset %r: actions and gripper are kept as stored",
                        dataset_name)
            choice = "generic"
    if choice not in STANDARDIZERS:
        raise ConfigError(f"unknown standardisation {choice!r}; use auto, none or one of: {', '.join(STANDARDIZERS)}")
    return choice, STANDARDIZERS[choice]
