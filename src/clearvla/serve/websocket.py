"""`WS /ws`: openpi's websocket protocol, so openpi-client's `WebsocketClientPolicy` (and `ActionChunkBroker` over
it) works unchanged.

On connect the server sends the metadata (a msgpack map, as openpi's server does); then each binary msgpack-numpy
frame with a request (our fields or openpi's observation layouts, see aliases.py) is answered by one binary frame
with `ActResponse.websocket_reply()`: `actions` [K, A] float64 after the safety limits, `raw_actions` [K, A] before
them, and plain (non-array) fields, so that the broker's per-step slicing of every array leaf is right. Every
error is answered as a JSON text frame `{"type": "error", "error", "status", "field"}` (openpi-client raises it
as a RuntimeError) and the connection stays open.
"""

from __future__ import annotations

import json
import logging
import time

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from clearvla.serve.codecs import msgpack_pack, msgpack_unpack
from clearvla.serve.errors import RequestError, error_body, error_status
from clearvla.serve.service import PolicyService

log = logging.getLogger(__name__)


async def serve_websocket(ws: WebSocket, service: PolicyService, authorized: bool) -> None:
    """One websocket connection, until the client disconnects. authorized: the handshake carried the token."""
    if not authorized:
        await ws.close(code=1008, reason="missing or wrong bearer token")  # before accept: HTTP 403
        return
    await ws.accept()
    try:
        await ws.send_bytes(msgpack_pack(service.metadata))
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            reply = await _answer(service, message)
            if isinstance(reply, bytes):
                await ws.send_bytes(reply)
            else:
                await ws.send_text(reply)
    except WebSocketDisconnect:
        return


async def _answer(service: PolicyService, message: dict) -> bytes | str:
    """One frame -> its reply: msgpack bytes with the answer, or the error as JSON text."""
    received, wall = time.monotonic(), time.time()
    try:
        if message.get("bytes") is None:
            raise RequestError("send msgpack binary frames, not text", status=400)
        payload = msgpack_unpack(message["bytes"], service.config.limits.max_body_bytes)
        _, res = await service.act(payload, received, wall, may_ask=True)
        return msgpack_pack(res.websocket_reply())
    except Exception as e:  # every error is answered as a text frame; the connection stays open
        if error_status(e) >= 500:
            log.error("internal error on /ws", exc_info=e)
        return json.dumps(error_body(e))
