"""The policy service behind every endpoint: payload -> validated request -> batched inference -> safety limits ->
ActResponse. `ServeConfig` holds the server's settings; `PolicyService` knows nothing of HTTP or websockets."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from clearvla.errors import ConfigError
from clearvla.serve.batcher import Batcher
from clearvla.serve.errors import RequestError
from clearvla.serve.responses import ActResponse
from clearvla.serve.safety import MIN_ACTION_DIM, SafetyConfig, check_deadline
from clearvla.serve.schema import ActRequest, ModelSpec, RequestLimits, parse_act


@dataclass(frozen=True)
class ServeConfig:
    """Server settings. token: required bearer token (None: no auth). max_batch_size / max_wait_ms / max_queue:
    dynamic batching. deadline_ms: default deadline for requests that set none (None: no default).
    center_crop: centre crop of area 0.9 (models trained with crop augmentation). model_name: for /metadata."""

    token: str | None = None
    max_batch_size: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 256
    deadline_ms: float | None = None
    center_crop: bool = False
    limits: RequestLimits = field(default_factory=RequestLimits)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    model_name: str = ""
    # /v1/act and /ws answer "ask" when the model's uncertainty (clarify/scoring.py: token models the action tokens'
    # entropy, chunk models the chunk's spread over augmented views; both in [0, 1]) is above it
    ask_threshold: float | None = None
    # POST /act answers failures as OpenVLA's deploy.py does (HTTP 200, body "error"), ignores unknown fields and
    # converts greyscale. Opt-in: a 200 on failure and an ignored typo'd `robot` (the default limits then apply) are
    # unsafe for clients that do not check for "error"; our own client uses the strict /v1/act either way.
    openvla_compat: bool = False



def predict_batch(vla: Any, requests: Sequence[ActRequest], center_crop: bool = False) -> np.ndarray:
    """B requests of one group (same unnorm_key and inputs) -> actions [B, K, A] float64, one batched forward
    (K: the chunk size, 1 for action-token models)."""
    kwargs: dict[str, Any] = {}
    if requests[0].model_proprio:
        kwargs["proprio"] = np.stack([r.proprio for r in requests])
    actions = vla.predict_action_chunk([r.observation for r in requests], [r.instruction for r in requests],
                                       requests[0].unnorm_key, center_crop=center_crop, **kwargs)
    actions = np.asarray(actions, dtype=np.float64).reshape(len(requests), chunk_size(vla), -1)
    if not np.isfinite(actions).all():
        raise RuntimeError("the model produced a non-finite action")  # never send NaN to a robot
    return actions


def chunk_size(vla: Any) -> int:
    """Actions per forward: the chunk size K of a chunk model, 1 for an action-token model."""
    return int(getattr(vla.config, "action_chunk", 0) or 1)



class PolicyService:
    """Payload -> validated request -> batched inference -> safety limits -> ActResponse (REST and websocket)."""

    def __init__(self, vla: Any, config: ServeConfig) -> None:
        self.vla = vla
        self.config = config
        self.spec = ModelSpec.from_model(vla)
        if any(limits.active for limits in config.safety.robots.values()):
            small = {k: d for k, d in self.spec.action_dims.items() if d < MIN_ACTION_DIM}
            if small:
                raise ConfigError(f"safety limits need end-effector delta actions (>= 6 dims); these keys have fewer: {small}")
        self.batcher = Batcher(lambda reqs: predict_batch(vla, reqs, config.center_crop),
                               config.max_batch_size, config.max_wait_ms, config.max_queue)
        self.scorer = None
        if config.ask_threshold is not None:
            from clearvla.clarify.scoring import VLAScorer

            self.scorer = VLAScorer(vla)
        self.metadata = self._metadata()

    async def act(
        self, payload: Any, received: float, wall_now: float, double_encoded: bool = False, may_ask: bool = False,
        openvla_compat: bool = False,
    ) -> tuple[ActRequest, ActResponse]:
        """A decoded payload -> (its request, the answer); raises the serve.errors for bad requests. received /
        wall_now: monotonic and Unix arrival times. may_ask: the endpoint can answer a clarifying question (/v1/act,
        /ws; never OpenVLA's /act). openvla_compat: deploy.py's lenient validation (see ServeConfig)."""
        request = parse_act(payload, self.spec, self.config.limits, received, default_deadline_ms=self.config.deadline_ms,
                            wall_now=wall_now, double_encoded=double_encoded, openvla_compat=openvla_compat)
        robot, limits = self.config.safety.resolve(request.robot)
        if limits is not None and limits.has_workspace and request.ee_position is None:
            raise RequestError(f"robot {robot!r} has a workspace box: send 'proprio' whose first 3 entries are the "
                               "end-effector position x, y, z in metres (not a joint-space state)", field="proprio")
        check_deadline(request.deadline, received, "on arrival")
        if may_ask and self.scorer is not None:
            question = await asyncio.to_thread(self._question, request)
            if question is not None:
                latency = (time.monotonic() - received) * 1000.0
                return request, ActResponse("ask", None, None, (), robot, request.unnorm_key, latency, 0, question)
        result = await self.batcher.submit(request)
        check_deadline(request.deadline, received, "before the action was returned")
        raw = result.actions
        actions, reasons = (raw, [[] for _ in raw]) if limits is None else limits.apply_chunk(raw, request.ee_position)
        latency = (time.monotonic() - received) * 1000.0
        response = ActResponse("action", actions, raw, tuple(tuple(r) for r in reasons), robot, request.unnorm_key,
                               latency, result.batch_size)
        return request, response

    def _question(self, request: ActRequest) -> str | None:
        """A rephrase question when the model is too unsure how to act on the instruction (`VLAScorer.uncertainty`
        above `ask_threshold`), else None."""
        from clearvla.clarify.clarifier import REPHRASE

        observation = request.observation if isinstance(request.observation, dict) else {self.spec.cameras[0]: request.observation}
        if request.model_proprio:
            observation = {**observation, "proprio": request.proprio}
        assert self.scorer is not None and self.config.ask_threshold is not None
        self.scorer.unnorm_key = request.unnorm_key
        if self.scorer.uncertainty(observation, request.instruction) <= self.config.ask_threshold:
            return None
        return REPHRASE.format(instruction=request.instruction)

    def _metadata(self) -> dict[str, Any]:
        from clearvla import __version__

        dims = dict(self.spec.action_dims)
        cfg = self.vla.config
        return {
            "server": "clearvla", "version": __version__, "model": self.config.model_name,
            "vision_backbone_id": cfg.vision_backbone_id, "llm_backbone_id": cfg.llm_backbone_id,
            "image_size": self.vla.processor.image_size, "cameras": list(self.spec.cameras),
            "proprio_dim": self.spec.proprio_dim, "norm_keys": sorted(dims), "action_dims": dims,
            "action_dim": next(iter(set(dims.values()))) if len(set(dims.values())) == 1 else None,
            "chunk_size": chunk_size(self.vla),
            "execute_actions": int(getattr(cfg, "execute_actions", 0)) or chunk_size(self.vla),
            "batching": {"max_batch_size": self.config.max_batch_size, "max_wait_ms": self.config.max_wait_ms},
            "limits": self.config.safety.to_dict(), "default_deadline_ms": self.config.deadline_ms,
            "openvla_compat": self.config.openvla_compat,
            "request_limits": {"max_body_bytes": self.config.limits.max_body_bytes,
                               "max_image_side": self.config.limits.max_image_side,
                               "max_instruction_chars": self.config.limits.max_instruction_chars},
        }
