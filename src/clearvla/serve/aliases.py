"""openpi's observation layouts as aliases of the request schema (`schema.py`), so openpi-client robots work
unchanged. `canonical(payload, cameras)` renames the aliases to our fields before validation:

    alias (openpi example)                                    ours
    prompt                                                    instruction
    observation/image                (LIBERO)                 image (the model's first camera)
    observation/wrist_image          (LIBERO)                 images.wrist
    observation/state                (LIBERO)                 state (end-effector first: x, y, z, ...)
    observation/exterior_image_1_left (DROID)                 image
    observation/wrist_image_left     (DROID)                  images.wrist
    observation/joint_position + observation/gripper_position  state = their concatenation [7 + 1] (joint space)
    images.cam_high                  (ALOHA)                  image
    images.cam_left_wrist / cam_right_wrist / cam_low (ALOHA) images.wrist / images.right_wrist / images.low
    state                            (ALOHA, with cam_* images) state (joint space)

An aliased camera the model does not read is dropped (openpi's input transforms drop them too; the model's missing
cameras are still reported). A joint-space state reaches models that read proprio but is never taken for the
end-effector position, so a robot with a workspace box gets a clear error instead of a wrong clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from clearvla.serve.codecs import decode_array
from clearvla.serve.errors import RequestError

PRIMARY = "image"  # the role of the model's first camera, whatever its name
CAMERAS = {
    "observation/image": PRIMARY, "observation/wrist_image": "wrist",
    "observation/exterior_image_1_left": PRIMARY, "observation/wrist_image_left": "wrist",
}
ALOHA_CAMERAS = {"cam_high": PRIMARY, "cam_left_wrist": "wrist", "cam_right_wrist": "right_wrist", "cam_low": "low"}
FIELDS = {"prompt": "instruction", "observation/state": "state"}
DROID_STATE = ("observation/joint_position", "observation/gripper_position")
ALIASES = (*CAMERAS, *FIELDS, *DROID_STATE)
MAX_STATE_BYTES = 8 * 1024


@dataclass(frozen=True)
class Canonical:
    """A payload in our fields. ee_state: the state's first 3 entries are the end-effector position (False for
    DROID's and ALOHA's joint-space states). dropped: aliased cameras the model does not read."""

    payload: dict[str, Any]
    ee_state: bool = True
    dropped: tuple[str, ...] = ()


def canonical(payload: dict[Any, Any], cameras: Sequence[str]) -> Canonical:
    """`payload` with openpi's aliases renamed (see the module docstring); `cameras`: the model's, first = image.
    Raises RequestError when an alias and the field it stands for are both sent."""
    out = {key: value for key, value in payload.items() if key not in ALIASES}
    views: dict[str, Any] = {}  # role -> image
    sources: dict[str, str] = {}  # role -> the alias it came as
    for alias, role in CAMERAS.items():
        if alias in payload:
            _put(views, role, payload[alias], alias, sources.get(role, ""))
            sources[role] = alias
    images = out.get("images")
    aloha = isinstance(images, dict) and any(name in ALOHA_CAMERAS and name not in cameras for name in images)
    if aloha:
        out["images"] = {name: img for name, img in images.items() if name not in ALOHA_CAMERAS or name in cameras}
        for name, role in ALOHA_CAMERAS.items():
            if name in images and name not in cameras:
                _put(views, role, images[name], f"images.{name}", sources.get(role, ""))
                sources[role] = f"images.{name}"
    for alias, target in FIELDS.items():
        if alias in payload:
            _put(out, target, payload[alias], alias, target)
    joint_state = _droid_state(payload, out)
    dropped = []
    for role, image in views.items():
        if role == PRIMARY:
            _put(out, "image", image, sources[role], "image")
        elif role in cameras[1:]:
            extra = out.setdefault("images", {})
            if not isinstance(extra, dict):
                raise RequestError(f"'images' must be an object {{camera name: image}}, got {type(extra).__name__}", field="images")
            _put(extra, role, image, sources[role], f"images.{role}")
        else:
            dropped.append(sources[role])
    if out.get("images") == {}:
        del out["images"]
    return Canonical(out, ee_state=not (aloha or joint_state), dropped=tuple(dropped))


def _put(target: dict[Any, Any], key: str, value: Any, alias: str, other: str) -> None:
    """target[key] = value, or RequestError when `other` (the field or alias that set it) already did."""
    if key in target:
        raise RequestError(f"send {other!r} or {alias!r}, not both", field=alias)
    target[key] = value


def _droid_state(payload: dict[Any, Any], out: dict[Any, Any]) -> bool:
    """DROID's joint positions [7] and gripper position [1] -> out["state"] float64 [8]; whether they were sent."""
    present = [key for key in DROID_STATE if key in payload]
    if not present:
        return False
    if len(present) == 1:
        raise RequestError(f"DROID's state is {DROID_STATE[0]!r} and {DROID_STATE[1]!r}: send both", field=present[0])
    parts = []
    for key in DROID_STATE:
        part = np.atleast_1d(decode_array(payload[key], key, MAX_STATE_BYTES))
        if part.ndim != 1 or part.dtype.kind not in "iuf":
            raise RequestError(f"{key!r} must be a 1-D array of numbers, got shape {list(part.shape)} of {part.dtype}", field=key)
        parts.append(part.astype(np.float64))
    _put(out, "state", np.concatenate(parts), DROID_STATE[0], "state")
    return True
