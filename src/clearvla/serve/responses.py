"""What the server answers, one renderer per wire: the `/v1/act` JSON envelope, the websocket reply that openpi's
`ActionChunkBroker` can slice, and OpenVLA deploy.py's `/act` bodies (its action, and its `"error"`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from clearvla.serve.codecs import json_numpy_dumps, json_numpy_encode

# deploy.py's answer to any failed request: `return "error"` from a FastAPI route, i.e. HTTP 200 with this body
OPENVLA_ERROR = b'"error"'


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

    def envelope(self) -> dict[str, Any]:
        """The `/v1/act` answer, arrays as JSON number lists: the chunk and, for convenience, its step 0."""
        def out(a: np.ndarray | None) -> Any:
            return None if a is None else a.tolist()

        body: dict[str, Any] = {"type": self.kind, "action": out(self.action), "raw_action": out(self.raw_action),
                                "clipped": self.clipped, "clip_reasons": list(self.clip_reasons),
                                "actions": out(self.actions), "raw_actions": out(self.raw_actions),
                                "step_clip_reasons": [list(r) for r in self.step_reasons], "robot": self.robot,
                                "unnorm_key": self.unnorm_key, "latency_ms": round(self.latency_ms, 3),
                                "batch_size": self.batch_size}
        return self._with_question(body)

    def websocket_reply(self) -> dict[str, Any]:
        """The `/ws` answer (msgpack-numpy). Every numpy leaf is a [K, A] chunk (`actions`, `raw_actions`) and
        everything else is a plain value, so openpi's `ActionChunkBroker` (which indexes every array leaf along
        axis 0, step by step) hands out step i's action for any horizon up to K; step 0's fields of `envelope()`
        are left out for the same reason. `step_clip_reasons` stays the whole list [K][reasons]."""
        body: dict[str, Any] = {"type": self.kind, "actions": self.actions, "raw_actions": self.raw_actions,
                                "step_clip_reasons": [list(r) for r in self.step_reasons], "robot": self.robot,
                                "unnorm_key": self.unnorm_key, "latency_ms": round(self.latency_ms, 3),
                                "batch_size": self.batch_size}
        return self._with_question(body)

    def _with_question(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "ask":
            body["question"] = self.question
            body["options"] = []  # a rephrase question: the answer is a new instruction
        return body


def openvla_body(action: np.ndarray, double_encoded: bool) -> bytes:
    """OpenVLA deploy.py's response body, byte for byte: `JSONResponse(action)` under `json_numpy.patch()`, or
    for double-encoded requests `JSONResponse(json_numpy.dumps(action))` (a JSON string holding the JSON)."""
    content: Any = json_numpy_dumps(action) if double_encoded else json_numpy_encode(action)
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()
