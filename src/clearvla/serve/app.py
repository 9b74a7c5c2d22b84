"""The policy server app: `create_app(vla, ServeConfig) -> FastAPI` and `load_model`.

Endpoints (every one but /healthz needs `Authorization: Bearer <token>` when a token is set):

    POST /act        OpenVLA deploy.py's protocol: json_numpy payload in, the json_numpy action out (a JSON string
                     of it for `{"encoded": ...}` requests; a chunk model's first step). Clipping is reported in the
                     headers X-ClearVLA-Clipped (true/false) and X-ClearVLA-Clip-Reasons. Failures are 4xx error
                     objects, or with `openvla_compat` (--openvla-compat) deploy.py's own answer: HTTP 200 with the
                     JSON string "error", the reason in the server log; unknown fields are then ignored and
                     greyscale images converted to RGB.
    POST /v1/act     The same request, always strictly validated; answers the envelope {"type": "action", "action":
                     [..], "raw_action": [..], "clipped", "clip_reasons", "actions": [K][..], "raw_actions",
                     "step_clip_reasons", "robot", "unnorm_key", "latency_ms", "batch_size"}: `actions` is the whole
                     chunk of a chunk model (K = 1 for action-token models), limited step by step; `action` its
                     first step. "type": "ask" (with "question" and "options", no action): a clarifying question, when
                     the server runs with --ask-threshold and the model is unsure how to act on the instruction.
    WS   /ws, /      openpi's protocol (openpi-client's WebsocketClientPolicy works unchanged, see websocket.py).
    GET  /healthz    {"status": "ok"}, no auth (for liveness probes).
    GET  /metadata   model, cameras, proprio width, normalisation keys, action dims, chunk size, the actions of
                     each chunk to execute (the checkpoint's `execute_actions`), limits.
    GET  /stats      batching counters.

Every error is `{"type": "error", "error": message, "status": code, "field": name}` with a 4xx status
(503 when the queue is full); only a bug in the server itself answers 500, and never with details.
"""

from __future__ import annotations

import hmac
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from clearvla.errors import ClearVLAError, ConfigError
from clearvla.serve.errors import RequestError, Unauthorized, error_body, error_status
from clearvla.serve.responses import OPENVLA_ERROR, ActResponse, openvla_body
from clearvla.serve.schema import ActRequest, parse_json_body
from clearvla.serve.service import PolicyService, ServeConfig
from clearvla.serve.websocket import serve_websocket

log = logging.getLogger(__name__)


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


def authorized(header: str | None, token: str | None) -> bool:
    """`Authorization: Bearer <token>` (or openpi's `Api-Key <token>`), compared in constant time."""
    if token is None:
        return True
    scheme, _, credentials = (header or "").partition(" ")
    if scheme.lower() not in ("bearer", "api-key"):
        return False
    return hmac.compare_digest(credentials.strip().encode("utf-8", "surrogateescape"), token.encode())


def create_app(vla: Any, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving `vla` (see the module docstring for the endpoints)."""
    service = PolicyService(vla, config or ServeConfig())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.batcher.start()
        yield
        await service.batcher.stop()

    # No /docs or /openapi.json: nothing unauthenticated beyond /healthz.
    app = FastAPI(title="clearvla policy server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    _add_error_handlers(app)
    _add_act_routes(app, service)
    _add_info_routes(app, service)

    async def websocket(ws: WebSocket) -> None:
        await serve_websocket(ws, service, authorized(ws.headers.get("authorization"), service.config.token))

    app.add_api_websocket_route("/ws", websocket)
    app.add_api_websocket_route("/", websocket)  # openpi's path: WebsocketClientPolicy(host, port) connects to ws://host:port

    return app


def require_auth(request: Request, token: str | None) -> None:
    if not authorized(request.headers.get("authorization"), token):
        raise Unauthorized("missing or wrong bearer token: send 'Authorization: Bearer <token>'")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or RequestError 413 as soon as it passes `limit` bytes (declared or streamed)."""
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


def _add_error_handlers(app: FastAPI) -> None:
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


def _add_act_routes(app: FastAPI, service: PolicyService) -> None:
    config = service.config

    async def act(request: Request, may_ask: bool = False, openvla_compat: bool = False) -> tuple[ActRequest, ActResponse]:
        received, wall = time.monotonic(), time.time()
        require_auth(request, config.token)
        payload, double_encoded = parse_json_body(await read_body(request, config.limits.max_body_bytes))
        return await service.act(payload, received, wall, double_encoded, may_ask=may_ask, openvla_compat=openvla_compat)

    @app.post("/act")
    async def act_openvla(request: Request) -> Response:
        if not config.openvla_compat:
            req, res = await act(request)
        else:
            try:
                req, res = await act(request, openvla_compat=True)
            except Unauthorized:  # not a request deploy.py could have failed: the token is ours
                raise
            except Exception as e:
                _log_openvla_failure(e)
                return Response(OPENVLA_ERROR, media_type="application/json")
        headers = {"X-ClearVLA-Clipped": str(res.clipped).lower(), "X-ClearVLA-Clip-Reasons": ",".join(res.clip_reasons),
                   "X-ClearVLA-Latency-Ms": f"{res.latency_ms:.3f}"}
        return Response(openvla_body(res.action, req.double_encoded), media_type="application/json", headers=headers)

    @app.post("/v1/act")
    async def act_v1(request: Request) -> JSONResponse:
        _, res = await act(request, may_ask=True)
        return JSONResponse(res.envelope())


def _log_openvla_failure(error: Exception) -> None:
    """The server-side reason for an OpenVLA compat "error" answer (the client only ever sees "error")."""
    status = error_status(error)
    if status >= 500:
        log.error('/act answered "error": internal error', exc_info=error)
    else:
        log.warning('/act answered "error" (OpenVLA compat; strict would be %d, field %s): %s', status,
                    getattr(error, "field", None), error)


def _add_info_routes(app: FastAPI, service: PolicyService) -> None:
    token = service.config.token

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    async def metadata(request: Request) -> dict[str, Any]:
        require_auth(request, token)
        return service.metadata

    @app.get("/stats")
    async def stats(request: Request) -> dict[str, Any]:
        require_auth(request, token)
        s = dict(service.batcher.stats)
        s["queue_depth"] = service.batcher.queue_depth
        s["mean_batch_size"] = round(s["batched_requests"] / s["batches"], 3) if s["batches"] else None
        return s
