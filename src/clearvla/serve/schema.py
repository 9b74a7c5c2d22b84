"""What `/act`, `/v1/act` and the websocket accept, and the validation every request passes before the model
(the answers are rendered in responses.py).

Request (a JSON object with json_numpy arrays over REST, a msgpack map with numpy arrays over the websocket):

    image        uint8 [H, W, 3] RGB          required; OpenVLA's field, the model's first camera (also CHW
                                              [3, H, W] and float in [0, 1]: see images.py)
    instruction  str                          required, e.g. "pick up the red block"
    unnorm_key   str | null                   normalisation key (optional when the checkpoint has one)
    images       {camera: uint8 [H, W, 3]}    the model's other cameras (multi-camera checkpoints)
    proprio      [P] float (alias: state)     robot state in raw units; first 3 entries = end-effector x, y, z
                                              in metres (read by the workspace box); passed to models with
                                              proprio_dim = P > 0
    robot        str                          which robot's safety limits apply (default: the server's)
    deadline_ms  number > 0                   drop the request if its action is not ready this many ms after
                                              the server received it
    deadline     number                       the same as an absolute Unix time in seconds (client clock)

or OpenVLA's double-encoded form `{"encoded": "<the same object as a json_numpy JSON string>"}`, or openpi's
observation layouts (`prompt`, `observation/image`, ...: aliases.py). Unknown fields are rejected (a typo in
`robot` must not silently select another robot's limits), except in OpenVLA compat mode (`openvla_compat=True`,
`clearvla serve --openvla-compat`), which ignores them and converts greyscale images as deploy.py does.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from clearvla.actions.normalize import select_stats
from clearvla.errors import UnnormKeyError
from clearvla.serve.aliases import ALIASES, canonical
from clearvla.serve.codecs import decode_array, describe
from clearvla.serve.errors import RequestError
from clearvla.serve.images import rgb_image
from clearvla.serve.safety import resolve_deadline

log = logging.getLogger(__name__)

FIELDS = ("image", "instruction", "unnorm_key", "images", "proprio", "state", "robot", "deadline_ms", "deadline")
MAX_PROPRIO = 1024
MAX_DEADLINE_MS = 3_600_000.0


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one request. max_body_bytes: the whole HTTP body or websocket message. max_image_side: pixels
    per image side. max_instruction_chars: characters of the instruction."""

    max_body_bytes: int = 32 * 2**20
    max_image_side: int = 2048
    max_instruction_chars: int = 1000


@dataclass(frozen=True)
class ModelSpec:
    """What a request is validated against: the model's cameras (first = `image`), its proprio width (0: none)
    and normalisation keys (key -> action dimension)."""

    cameras: tuple[str, ...]
    proprio_dim: int
    action_dims: Mapping[str, int]

    @classmethod
    def from_model(cls, vla: Any) -> "ModelSpec":
        # getattr with OpenVLA's defaults: works with models from before and after multi-camera support.
        cameras = tuple(getattr(vla.config, "cameras", ("image",)))
        proprio_dim = int(getattr(vla.config, "proprio_dim", 0))
        return cls(cameras, proprio_dim, {key: vla.action_dim(key) for key in sorted(vla.norm_stats)})


@dataclass(frozen=True)
class ActRequest:
    """A validated request. observation: uint8 [H, W, 3] for single-camera models, else {camera: image} with
    every camera of the model. proprio: float64 [P] or None. model_proprio: whether the model reads proprio.
    deadline: monotonic seconds or None. received: monotonic seconds when the request arrived."""

    observation: np.ndarray | dict[str, np.ndarray]
    instruction: str
    unnorm_key: str
    proprio: np.ndarray | None
    model_proprio: bool
    robot: str | None
    deadline: float | None
    received: float
    double_encoded: bool = False
    ee_state: bool = True  # proprio starts with the end-effector position (False: a joint-space openpi layout)

    @property
    def ee_position(self) -> np.ndarray | None:
        """The end-effector position [3] metres: the first three entries of an end-effector proprio."""
        return None if self.proprio is None or len(self.proprio) < 3 or not self.ee_state else self.proprio[:3]

    @property
    def group(self) -> tuple[str, bool]:
        """Requests with the same group can share one batched forward pass."""
        return self.unnorm_key, self.model_proprio


def parse_json_body(body: bytes) -> tuple[dict[str, Any], bool]:
    """An HTTP body -> (payload object, double_encoded). Handles OpenVLA's `{"encoded": "<json string>"}`."""
    payload = _loads(body, "request body")
    if "encoded" in payload:
        if len(payload) != 1:
            raise RequestError(f"an 'encoded' payload must have no other fields, got {sorted(payload)}", status=400, field="encoded")
        if not isinstance(payload["encoded"], str):
            raise RequestError(f"'encoded' must be a JSON string, got {describe(payload['encoded'])}", status=400, field="encoded")
        return _loads(payload["encoded"], "'encoded'"), True
    return payload, False


def _loads(text: bytes | str, what: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestError(f"{what} is not valid JSON ({type(e).__name__}: {str(e)[:200]})", status=400) from None
    if not isinstance(payload, dict):
        raise RequestError(f"{what} must be a JSON object with 'image' and 'instruction', got {describe(payload)}", status=400)
    return payload


def parse_act(
    payload: Any,
    spec: ModelSpec,
    limits: RequestLimits,
    received: float,
    *,
    default_deadline_ms: float | None = None,
    wall_now: float | None = None,
    double_encoded: bool = False,
    openvla_compat: bool = False,
) -> ActRequest:
    """A decoded payload -> ActRequest. Raises RequestError (4xx) naming the field for anything that is missing,
    mistyped, mis-shaped, non-finite or too large. `received` is the monotonic arrival time; the deadline is
    resolved against it (`safety.resolve_deadline`), with the server's `default_deadline_ms`. openvla_compat:
    ignore unknown fields and accept greyscale/RGBA images, as OpenVLA's deploy.py does."""
    if not isinstance(payload, dict):
        raise RequestError(f"the request must be an object with 'image' and 'instruction', got {describe(payload)}", status=400)
    aliased = canonical(payload, spec.cameras)
    payload = aliased.payload
    unknown = sorted(str(k)[:100] for k in set(payload) - set(FIELDS))
    if unknown and not openvla_compat:
        raise RequestError(f"unknown field(s) {unknown[:10]}; allowed: {', '.join(FIELDS)} (or openpi's "
                           f"{', '.join(ALIASES)})", field=unknown[0])
    if unknown:
        log.info("/act: ignoring unknown field(s) %s, as OpenVLA's deploy.py does", unknown[:10])
    for name in ("image", "instruction"):
        if name not in payload:
            raise RequestError(f"missing field {name!r} (OpenVLA's payload: image, instruction, unnorm_key; openpi's: "
                               "observation/image, prompt)", field=name)
    observation = _observation(payload, spec, limits, greyscale=openvla_compat)
    instruction = payload["instruction"]
    if not isinstance(instruction, str) or not instruction.strip():
        raise RequestError(f"'instruction' must be a non-empty string, got {describe(instruction)}", field="instruction")
    if len(instruction) > limits.max_instruction_chars:
        raise RequestError(f"'instruction' has {len(instruction)} characters (limit {limits.max_instruction_chars})", field="instruction")
    unnorm_key = payload.get("unnorm_key")
    if unnorm_key is not None and not isinstance(unnorm_key, str):
        raise RequestError(f"'unnorm_key' must be a string or null, got {describe(unnorm_key)}", field="unnorm_key")
    try:
        unnorm_key = select_stats(dict.fromkeys(spec.action_dims), unnorm_key)
    except UnnormKeyError as e:
        raise RequestError(str(e), field="unnorm_key") from None

    proprio = _proprio(payload, spec)
    robot = payload.get("robot")
    if robot is not None and not isinstance(robot, str):
        raise RequestError(f"'robot' must be a string, got {describe(robot)}", field="robot")
    deadline_ms = _number(payload, "deadline_ms", low=0.0, high=MAX_DEADLINE_MS)
    deadline_unix = _number(payload, "deadline", low=0.0, high=1e11)
    deadline = resolve_deadline(received, deadline_ms, deadline_unix, default_deadline_ms, wall_now)
    return ActRequest(observation, instruction, unnorm_key, proprio, spec.proprio_dim > 0, robot, deadline, received,
                      double_encoded, aliased.ee_state)


def _observation(payload: dict[str, Any], spec: ModelSpec, limits: RequestLimits, greyscale: bool) -> np.ndarray | dict[str, np.ndarray]:
    """`image` (+ `images`) -> uint8 [H, W, 3], or {camera: image} with every camera of a multi-camera model."""
    def image(value: Any, field: str) -> np.ndarray:
        return rgb_image(value, field, limits.max_body_bytes, limits.max_image_side, greyscale=greyscale)

    first = image(payload["image"], "image")
    extra = payload.get("images") or {}
    if not isinstance(extra, dict):
        raise RequestError(f"'images' must be an object {{camera name: image}}, got {describe(extra)}", field="images")
    others = spec.cameras[1:]
    wrong = sorted(str(name) for name in extra if name not in others)
    if wrong:
        hint = "send the first camera as 'image'" if spec.cameras[0] in extra else f"this model's other cameras: {list(others) or 'none'}"
        raise RequestError(f"unexpected camera(s) {wrong[:10]} in 'images'; {hint}", field="images")
    missing = [name for name in others if name not in extra]
    if missing:
        raise RequestError(f"missing camera(s) {missing} in 'images'; this model reads {list(spec.cameras)}", field="images")
    if len(spec.cameras) == 1:
        return first
    return {spec.cameras[0]: first, **{name: image(extra[name], f"images.{name}") for name in others}}


def _proprio(payload: dict[str, Any], spec: ModelSpec) -> np.ndarray | None:
    if "proprio" in payload and "state" in payload:
        raise RequestError("send the robot state as 'proprio' or 'state', not both", field="state")
    field = "state" if "state" in payload else "proprio"
    value = payload.get(field)
    if value is None:
        if spec.proprio_dim:
            raise RequestError(f"this model reads the robot state: send '{field}', [{spec.proprio_dim}] numbers", field=field)
        return None
    if isinstance(value, list):
        if not 1 <= len(value) <= MAX_PROPRIO or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise RequestError(f"'{field}' must be a list of 1..{MAX_PROPRIO} numbers, got {describe(value)}", field=field)
        try:
            state = np.asarray(value, dtype=np.float64)
        except OverflowError:
            raise RequestError(f"'{field}' holds a number too large for float64", field=field) from None
    else:
        state = decode_array(value, field, 8 * MAX_PROPRIO)
        if state.dtype.kind not in "iuf":
            raise RequestError(f"'{field}' must hold numbers, got dtype {state.dtype}", field=field)
        state = state.astype(np.float64)
    if state.ndim != 1 or not 1 <= len(state) <= MAX_PROPRIO:
        raise RequestError(f"'{field}' must be a 1-D list of 1..{MAX_PROPRIO} numbers, got shape {list(state.shape)}", field=field)
    if spec.proprio_dim and len(state) != spec.proprio_dim:
        raise RequestError(f"'{field}' has {len(state)} entries; this model reads {spec.proprio_dim}", field=field)
    if not np.isfinite(state).all():
        raise RequestError(f"'{field}' contains NaN or infinity", field=field)
    return state


def _number(payload: dict[str, Any], field: str, low: float, high: float) -> float | None:
    value = payload.get(field)
    if value is None:
        return None
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not math.isfinite(number) or not low < number <= high:
        raise RequestError(f"'{field}' must be a finite number in ({low:g}, {high:g}], got {describe(value)}", field=field)
    return number
