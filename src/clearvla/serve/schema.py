"""What `/act` (and the websocket) accept and answer, and the validation every request passes before the model.

Request (a JSON object with json_numpy arrays over REST, a msgpack map with numpy arrays over the websocket):

    image        uint8 [H, W, 3] RGB          required; OpenVLA's field, the model's first camera
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

or OpenVLA's double-encoded form `{"encoded": "<the same object as a json_numpy JSON string>"}`.
Unknown fields are rejected (a typo in `robot` must not silently select another robot's limits).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from clearvla.actions.normalize import select_stats
from clearvla.errors import UnnormKeyError
from clearvla.serve.codecs import describe, is_json_numpy, json_numpy_decode, json_numpy_dumps, json_numpy_encode
from clearvla.serve.errors import RequestError
from clearvla.serve.safety import resolve_deadline

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

    @property
    def ee_position(self) -> np.ndarray | None:
        """The end-effector position [3] metres: the first three entries of proprio."""
        return None if self.proprio is None or len(self.proprio) < 3 else self.proprio[:3]

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
) -> ActRequest:
    """A decoded payload -> ActRequest. Raises RequestError (4xx) naming the field for anything that is missing,
    mistyped, mis-shaped, non-finite or too large. `received` is the monotonic arrival time; the deadline is
    resolved against it (`safety.resolve_deadline`), with the server's `default_deadline_ms`."""
    if not isinstance(payload, dict):
        raise RequestError(f"the request must be an object with 'image' and 'instruction', got {describe(payload)}", status=400)
    unknown = sorted(str(k) for k in set(payload) - set(FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s) {unknown[:10]}; allowed: {', '.join(FIELDS)}", field=unknown[0][:100])
    for name in ("image", "instruction"):
        if name not in payload:
            raise RequestError(f"missing field {name!r} (OpenVLA's payload: image, instruction, unnorm_key)", field=name)

    image = _image(payload["image"], "image", limits)
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
    observation: np.ndarray | dict[str, np.ndarray] = image
    if len(spec.cameras) > 1:
        observation = {spec.cameras[0]: image, **{name: _image(extra[name], f"images.{name}", limits) for name in others}}

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
    return ActRequest(observation, instruction, unnorm_key, proprio, spec.proprio_dim > 0, robot, deadline, received, double_encoded)


def _array(value: Any, field: str, limits: RequestLimits) -> np.ndarray:
    if isinstance(value, np.ndarray):  # msgpack frames arrive decoded
        return value
    if is_json_numpy(value):
        return json_numpy_decode(value, field, limits.max_body_bytes)
    raise RequestError(f"{field} must be a numpy array (json_numpy over REST, msgpack-numpy over the websocket), "
                       f"got {describe(value)}", field=field)


def _image(value: Any, field: str, limits: RequestLimits) -> np.ndarray:
    image = _array(value, field, limits)
    if image.dtype != np.uint8:
        raise RequestError(f"{field} must have dtype uint8 (RGB 0..255), got {image.dtype}", field=field)
    if image.ndim != 3 or image.shape[2] != 3:
        raise RequestError(f"{field} must have shape [H, W, 3] (RGB), got {list(image.shape)}", field=field)
    h, w = image.shape[:2]
    if not (1 <= h <= limits.max_image_side and 1 <= w <= limits.max_image_side):
        status = 413 if max(h, w) > limits.max_image_side else 422
        raise RequestError(f"{field} is {h}x{w}; each side must be 1..{limits.max_image_side} pixels", status=status, field=field)
    return image


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
        state = _array(value, field, RequestLimits(max_body_bytes=8 * MAX_PROPRIO))
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


# --- responses -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActResponse:
    """What the server answers. kind: "action", or "ask" (a clarifying question instead of an action, when the
    server runs with an ask threshold; the actions are then None). actions / raw_actions: float64 [K, A] after /
    before the safety limits, K = 1 for action-token models and the chunk size for chunk models; step_reasons: the
    limits that changed each step. `action`, `raw_action`, `clip_reasons`: step 0's."""

    kind: str
    actions: np.ndarray | None
    raw_actions: np.ndarray | None
    step_reasons: tuple[tuple[str, ...], ...]
    robot: str | None
    unnorm_key: str
    latency_ms: float
    batch_size: int
    question: str | None = None

    @property
    def action(self) -> np.ndarray | None:
        return None if self.actions is None else self.actions[0]

    @property
    def raw_action(self) -> np.ndarray | None:
        return None if self.raw_actions is None else self.raw_actions[0]

    @property
    def clip_reasons(self) -> tuple[str, ...]:
        return self.step_reasons[0] if self.step_reasons else ()

    @property
    def clipped(self) -> bool:
        return bool(self.clip_reasons)

    def envelope(self, arrays: str = "list") -> dict[str, Any]:
        """The versioned answer (`/v1/act`, websocket). arrays="list": JSON number lists; "numpy": arrays
        (for msgpack)."""

        def out(a: np.ndarray | None) -> Any:
            return None if a is None else (a.tolist() if arrays == "list" else a)

        body: dict[str, Any] = {"type": self.kind, "action": out(self.action), "raw_action": out(self.raw_action),
                                "clipped": self.clipped, "clip_reasons": list(self.clip_reasons),
                                "actions": out(self.actions), "raw_actions": out(self.raw_actions),
                                "step_clip_reasons": [list(r) for r in self.step_reasons], "robot": self.robot,
                                "unnorm_key": self.unnorm_key, "latency_ms": round(self.latency_ms, 3),
                                "batch_size": self.batch_size}
        if self.kind == "ask":
            body["question"] = self.question
            body["options"] = []  # a rephrase question: the answer is a new instruction
        return body


def openvla_body(action: np.ndarray, double_encoded: bool) -> bytes:
    """OpenVLA deploy.py's response body, byte for byte: `JSONResponse(action)` under `json_numpy.patch()`, or
    for double-encoded requests `JSONResponse(json_numpy.dumps(action))` (a JSON string holding the JSON)."""
    content: Any = json_numpy_dumps(action) if double_encoded else json_numpy_encode(action)
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()
