"""The policy server app: `create_app(vla, ServeConfig) -> FastAPI` and `load_model`.

Endpoints (every one but /healthz needs `Authorization: Bearer <token>` when a token is set):

    POST /act        OpenVLA deploy.py's protocol, unchanged: json_numpy payload in, the json_numpy action out
                     (a JSON string of it for `{"encoded": ...}` requests; a chunk model's first step). Clipping is
                     reported in the headers X-ClearVLA-Clipped (true/false) and X-ClearVLA-Clip-Reasons.
    POST /v1/act     The same request; answers the envelope {"type": "action", "action": [..], "raw_action":
                     [..], "clipped", "clip_reasons", "actions": [K][..], "raw_actions", "step_clip_reasons", "robot",
                     "unnorm_key", "latency_ms", "batch_size"}: `actions` is the whole chunk of a chunk model (K = 1
                     for action-token models), limited step by step; `action` its first step.
                     "type": "ask" (with "question" and "options", no action): a clarifying question, when the
                     server runs with --ask-threshold and the model is unsure how to act on the instruction.
    WS   /ws         openpi-style: the server first sends the metadata, then answers each msgpack-numpy request
                     frame with the envelope (arrays as numpy); errors come back as a JSON text frame.
    GET  /healthz    {"status": "ok"}, no auth (for liveness probes).
    GET  /metadata   model, cameras, proprio width, normalisation keys, action dims, chunk size, the actions of
                     each chunk to execute (the checkpoint's `execute_actions`), limits.
    GET  /stats      batching counters.

Every error is `{"type": "error", "error": message, "status": code, "field": name}` with a 4xx status
(503 when the queue is full); only a bug in the server itself answers 500, and never with details.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.websockets import WebSocketDisconnect

from clearvla.errors import ClearVLAError, ConfigError
from clearvla.serve.batcher import Batcher
from clearvla.serve.codecs import msgpack_pack, msgpack_unpack
from clearvla.serve.errors import RequestError, Unauthorized, error_body, error_status
from clearvla.serve.safety import MIN_ACTION_DIM, SafetyConfig, check_deadline
from clearvla.serve.schema import ActRequest, ActResponse, ModelSpec, RequestLimits, openvla_body, parse_act, parse_json_body

log = logging.getLogger(__name__)


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


def load_model(checkpoint: Path, *, dtype: str = "float32", device: str = "auto", quantize: str = "none") -> Any:
    """The one place the server loads a model. dtype: float32 | bfloat16; device: auto (CUDA when available) | cpu |
    cuda[:N]; quantize: none | int8 | int4 (bitsandbytes, the `quantize` extra)."""
    import torch

    from clearvla.infer.quantize import load_for_inference

    if not (Path(checkpoint) / "config.json").is_file():
        raise ConfigError(f"{checkpoint} is not a checkpoint directory (no config.json)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_for_inference(checkpoint, dtype=dtype, quantize=quantize, device=device).eval()


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


def authorized(header: str | None, token: str | None) -> bool:
    """`Authorization: Bearer <token>` (or openpi's `Api-Key <token>`), compared in constant time."""
    if token is None:
        return True
    scheme, _, credentials = (header or "").partition(" ")
    if scheme.lower() not in ("bearer", "api-key"):
        return False
    return hmac.compare_digest(credentials.strip().encode("utf-8", "surrogateescape"), token.encode())


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
        self, payload: Any, received: float, wall_now: float, double_encoded: bool = False, may_ask: bool = False
    ) -> tuple[ActRequest, ActResponse]:
        """`may_ask`: the endpoint can answer a clarifying question (/v1/act, /ws; never OpenVLA's /act)."""
        request = parse_act(payload, self.spec, self.config.limits, received, default_deadline_ms=self.config.deadline_ms,
                            wall_now=wall_now, double_encoded=double_encoded)
        robot, limits = self.config.safety.resolve(request.robot)
        if limits is not None and limits.has_workspace and request.ee_position is None:
            raise RequestError(f"robot {robot!r} has a workspace box: send 'proprio' whose first 3 entries are the "
                               "end-effector position x, y, z in metres", field="proprio")
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
            "request_limits": {"max_body_bytes": self.config.limits.max_body_bytes,
                               "max_image_side": self.config.limits.max_image_side,
                               "max_instruction_chars": self.config.limits.max_instruction_chars},
        }


def create_app(vla: Any, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving `vla` (see the module docstring for the endpoints)."""
    config = config or ServeConfig()
    service = PolicyService(vla, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.batcher.start()
        yield
        await service.batcher.stop()

    # No /docs or /openapi.json: nothing unauthenticated beyond /healthz.
    app = FastAPI(title="clearvla policy server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    def require_auth(request: Request) -> None:
        if not authorized(request.headers.get("authorization"), config.token):
            raise Unauthorized("missing or wrong bearer token: send 'Authorization: Bearer <token>'")

    async def read_body(request: Request) -> bytes:
        limit = config.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise RequestError(f"request body is {declared} bytes; the limit is {limit:,} (--max-body-mb)", status=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"request body exceeds the limit of {limit:,} bytes (--max-body-mb)", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def act(request: Request, may_ask: bool = False) -> tuple[ActRequest, ActResponse]:
        received, wall = time.monotonic(), time.time()
        require_auth(request)
        payload, double_encoded = parse_json_body(await read_body(request))
        return await service.act(payload, received, wall, double_encoded, may_ask=may_ask)

    @app.exception_handler(ClearVLAError)
    async def client_error(request: Request, error: ClearVLAError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else {}
        if error_status(error) == 503:
            headers["Retry-After"] = "1"
        return JSONResponse(error_body(error), status_code=error_status(error), headers=headers)

    @app.exception_handler(HTTPException)
    async def routing_error(request: Request, error: HTTPException) -> JSONResponse:  # 404, 405: same error shape
        body = {"type": "error", "error": f"{error.detail}: {request.method} {request.url.path}", "status": error.status_code, "field": None}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        log.error("internal error on %s", request.url.path, exc_info=error)
        return JSONResponse(error_body(error), status_code=500)

    @app.post("/act")
    async def act_openvla(request: Request) -> Response:
        req, res = await act(request)
        headers = {"X-ClearVLA-Clipped": str(res.clipped).lower(), "X-ClearVLA-Clip-Reasons": ",".join(res.clip_reasons),
                   "X-ClearVLA-Latency-Ms": f"{res.latency_ms:.3f}"}
        return Response(openvla_body(res.action, req.double_encoded), media_type="application/json", headers=headers)

    @app.post("/v1/act")
    async def act_v1(request: Request) -> JSONResponse:
        _, res = await act(request, may_ask=True)
        return JSONResponse(res.envelope())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    async def metadata(request: Request) -> dict[str, Any]:
        require_auth(request)
        return service.metadata

    @app.get("/stats")
    async def stats(request: Request) -> dict[str, Any]:
        require_auth(request)
        s = dict(service.batcher.stats)
        s["queue_depth"] = service.batcher.queue_depth
        s["mean_batch_size"] = round(s["batched_requests"] / s["batches"], 3) if s["batches"] else None
        return s

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        if not authorized(ws.headers.get("authorization"), config.token):
            await ws.close(code=1008, reason="missing or wrong bearer token")  # before accept: HTTP 403
            return
        await ws.accept()
        try:
            await ws.send_bytes(msgpack_pack(service.metadata))
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                received, wall = time.monotonic(), time.time()
                try:
                    if message.get("bytes") is None:
                        raise RequestError("send msgpack binary frames, not text", status=400)
                    payload = msgpack_unpack(message["bytes"], config.limits.max_body_bytes)
                    _, res = await service.act(payload, received, wall, may_ask=True)
                    reply: bytes | str = msgpack_pack(res.envelope(arrays="numpy"))
                except WebSocketDisconnect:
                    raise
                except Exception as e:  # every error is answered as a text frame; the connection stays open
                    if error_status(e) >= 500:
                        log.error("internal error on /ws", exc_info=e)
                    reply = json.dumps(error_body(e))
                if isinstance(reply, bytes):
                    await ws.send_bytes(reply)
                else:
                    await ws.send_text(reply)
        except WebSocketDisconnect:
            return

    return app
