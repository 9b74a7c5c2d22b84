"""Robot-side client for `clearvla serve`, with timeouts and retries.

This file is self-contained on purpose: it imports only numpy and `requests` (plus `msgpack` and `websockets`
for the websocket client), never the rest of clearvla or torch, so it can be copied onto a robot computer as
is. `pip install 'clearvla[client]'` installs exactly those.

    from clearvla.client import PolicyClient, RemotePolicy
    policy = PolicyClient("http://127.0.0.1:8000", token="...", timeout=1.0, retries=2)
    result = policy.act(image, "pick up the red block", unnorm_key="bridge_orig", proprio=ee_state)
    if result.type == "action":
        robot.apply(result.action)        # [7] float64 after the server's safety limits
        if result.clipped: log(result.clip_reasons)
        # chunk models: result.actions is the whole chunk [K, 7], limited step by step, to execute open loop

    # or as a closed-loop policy that runs each chunk open loop (VLAPolicy's interface, LeRobot's select_action):
    policy = RemotePolicy(PolicyClient("http://127.0.0.1:8000"), unnorm_key="bridge_orig")
    action = policy.select_action({"image": image, "proprio": state}, {"instruction": "pick up the red block"})

Retries (with exponential back-off) cover connection failures, timeouts and 502/503/504 answers; a 4xx is
raised at once as `ServerError` (resending a bad request cannot help, and a 408 means the observation is stale).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RETRY_STATUSES = (502, 503, 504)


class ServerError(RuntimeError):
    """The server answered an error: `status` (HTTP code), `message`, and the request `field` it concerns."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.field = status, message, field


@dataclass(frozen=True)
class ActResult:
    """The server's answer. type: "action", or "ask" (a clarifying question in `question`, no action).
    action / raw_action: float64 [A] after / before the safety limits; clip_reasons: the limits that applied.
    actions / raw_actions: float64 [K, A], the whole chunk (K = the server's metadata chunk_size; `action` is
    actions[0]); step_clip_reasons: the limits that applied to each step."""

    type: str
    action: np.ndarray | None
    raw_action: np.ndarray | None = None
    clipped: bool = False
    clip_reasons: tuple[str, ...] = ()
    question: str | None = None
    latency_ms: float | None = None
    actions: np.ndarray | None = None
    raw_actions: np.ndarray | None = None
    step_clip_reasons: tuple[tuple[str, ...], ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_envelope(cls, body: dict[str, Any]) -> "ActResult":
        """A `/v1/act` envelope, or a `/ws` reply (which carries the chunk only: step 0 is taken from it)."""
        def arr(value: Any) -> np.ndarray | None:
            return None if value is None else np.asarray(value, dtype=np.float64)

        actions, raw_actions = arr(body.get("actions")), arr(body.get("raw_actions"))
        steps = tuple(tuple(r) for r in body.get("step_clip_reasons") or ())
        action = arr(body.get("action")) if "action" in body else (None if actions is None else actions[0])
        raw_action = arr(body.get("raw_action")) if "raw_action" in body else (None if raw_actions is None else raw_actions[0])
        reasons = tuple(body["clip_reasons"] or ()) if "clip_reasons" in body else (steps[0] if steps else ())
        return cls(body.get("type", "action"), action, raw_action, bool(body.get("clipped", bool(reasons))), reasons,
                   body.get("question"), body.get("latency_ms"), actions, raw_actions, steps, body)


def build_request(image: np.ndarray, instruction: str, unnorm_key: str | None = None, *, images: dict[str, np.ndarray] | None = None,
                  proprio: Any = None, robot: str | None = None, deadline_ms: float | None = None) -> dict[str, Any]:
    """The request object (numpy arrays kept as arrays; each transport encodes them). image: uint8 [H, W, 3]."""
    request: dict[str, Any] = {"image": np.ascontiguousarray(image), "instruction": instruction, "unnorm_key": unnorm_key}
    if images:
        request["images"] = {name: np.ascontiguousarray(img) for name, img in images.items()}
    if proprio is not None:
        request["proprio"] = np.asarray(proprio, dtype=np.float64)
    if robot is not None:
        request["robot"] = robot
    if deadline_ms is not None:
        request["deadline_ms"] = float(deadline_ms)
    return request


# --- REST -----------------------------------------------------------------------------------------------
class PolicyClient:
    """HTTP client (`POST /v1/act`). timeout: seconds per attempt; retries: extra attempts after the first."""

    def __init__(self, url: str = "http://127.0.0.1:8000", *, token: str | None = None, timeout: float = 2.0,
                 retries: int = 2, backoff_s: float = 0.05) -> None:
        import requests

        self.url = url.rstrip("/")
        self.timeout, self.retries, self.backoff_s = timeout, retries, backoff_s
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def act(self, image: np.ndarray, instruction: str, unnorm_key: str | None = None, **fields: Any) -> ActResult:
        """One action for an observation; `fields`: images, proprio, robot, deadline_ms (see build_request)."""
        body = json.dumps(build_request(image, instruction, unnorm_key, **fields), default=_json_numpy)
        return ActResult.from_envelope(self._call("POST", "/v1/act", data=body, headers={"Content-Type": "application/json"}))

    def metadata(self) -> dict[str, Any]:
        return self._call("GET", "/metadata")

    def healthy(self) -> bool:
        try:
            return self.session.get(self.url + "/healthz", timeout=self.timeout).status_code == 200
        except Exception:
            return False

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout):
                if last:
                    raise
            else:
                if response.status_code == 200:
                    return response.json()
                if response.status_code not in RETRY_STATUSES or last:
                    raise _server_error(response.status_code, response.text)
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")


def _json_numpy(obj: Any) -> Any:
    """json_numpy's wire format (what OpenVLA's deploy.py reads), without needing the json_numpy package."""
    if isinstance(obj, (np.ndarray, np.generic)):
        array = np.ascontiguousarray(obj)
        return {"__numpy__": base64.b64encode(array.tobytes()).decode(), "dtype": array.dtype.str, "shape": list(array.shape)}
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _server_error(status: int | None, text: str) -> ServerError:
    """An error answer -> ServerError; `status` None takes it from the body (websocket error frames)."""
    try:
        body = json.loads(text)
        return ServerError(int(status or body.get("status", 500)), str(body.get("error", text)), body.get("field"))
    except (ValueError, AttributeError, TypeError):
        return ServerError(status or 500, text[:500])


# --- closed loop --------------------------------------------------------------------------------------------
class RemotePolicy:
    """A served model as a closed-loop policy, with `VLAPolicy`'s interface: `select_action(obs, info)` -> the
    next action [A] float32, `reset()`, `last_action`.

    obs: {camera: uint8 [H, W, 3]} with every camera of the server's `metadata.cameras`, plus obs["proprio"] (the raw
    robot state) when the model reads one. Each answer's chunk (`actions` [K, A], after the server's limits) runs open
    loop: its first `execute` actions (default the server's `execute_actions`, the checkpoint's setting; all K from
    older servers) are queued and the server is asked again when the queue is empty. A clarifying question instead
    of an action raises RuntimeError: a loop without an operator cannot answer it. client: a PolicyClient or
    WebsocketPolicyClient."""

    def __init__(self, client: Any, unnorm_key: str | None = None, *, instruction: str | None = None,
                 execute: int | None = None, robot: str | None = None) -> None:
        meta = client.metadata() if callable(client.metadata) else client.metadata
        self.client, self.unnorm_key, self.instruction, self.robot = client, unnorm_key, instruction, robot
        self.cameras: list[str] = list(meta["cameras"])
        self.reads_state = bool(meta.get("proprio_dim"))
        chunk = int(meta.get("chunk_size") or 1)
        if execute is not None and not 1 <= execute <= chunk:
            raise ValueError(f"execute must be between 1 and the server's chunk size {chunk}, got {execute}")
        self.execute = execute or int(meta.get("execute_actions") or chunk)
        self.queue: list[np.ndarray] = []
        self.last_action: np.ndarray | None = None

    def reset(self) -> None:
        self.queue.clear()
        self.last_action = None

    def select_action(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        if not self.queue:
            missing = [name for name in self.cameras if name not in obs]
            if missing:
                raise KeyError(f"the observation lacks camera(s) {missing} that the served model reads")
            text = self.instruction if self.instruction is not None else info["instruction"]
            others = {name: obs[name] for name in self.cameras[1:]}
            result = self.client.act(obs[self.cameras[0]], text, self.unnorm_key, images=others or None,
                                     proprio=obs.get("proprio") if self.reads_state else None, robot=self.robot)
            if result.type != "action":
                raise RuntimeError(f"the server asked instead of acting: {result.question!r}")
            actions = result.actions if result.actions is not None else result.action[None]  # older servers
            self.queue.extend(np.asarray(actions[: self.execute], dtype=np.float32))
        self.last_action = self.queue.pop(0)
        return self.last_action

    __call__ = select_action


# --- websocket ------------------------------------------------------------------------------------------
class WebsocketPolicyClient:
    """Websocket client (`/ws`, openpi's msgpack-numpy protocol). Connects on first use; reconnects
    (up to `retries` times per call) when the connection drops. `metadata` is what the server sent on connect."""

    def __init__(self, url: str = "ws://127.0.0.1:8000/ws", *, token: str | None = None, timeout: float = 2.0,
                 retries: int = 2, backoff_s: float = 0.05) -> None:
        self.url, self.token = url, token
        self.timeout, self.retries, self.backoff_s = timeout, retries, backoff_s
        self._ws: Any = None
        self._metadata: dict[str, Any] = {}

    @property
    def metadata(self) -> dict[str, Any]:
        """What the server sent on connect (model, cameras, action dims, limits); connects if needed."""
        if self._ws is None:
            self.connect()
        return self._metadata

    def connect(self) -> None:
        import inspect

        import websockets.sync.client

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        options = {"additional_headers": headers, "open_timeout": self.timeout, "compression": None, "max_size": None}
        # Newer websockets: `legacy=True` returns the connection itself (we manage its lifetime), and proxy=None
        # keeps a robot's HTTP(S)_PROXY variables from routing it elsewhere; older versions lack both arguments.
        supported = inspect.signature(websockets.sync.client.connect).parameters
        options.update({k: v for k, v in (("legacy", True), ("proxy", None)) if k in supported})
        self._ws = websockets.sync.client.connect(self.url, **options)
        self._metadata = _unpack(self._ws.recv(timeout=self.timeout))

    def act(self, image: np.ndarray, instruction: str, unnorm_key: str | None = None, **fields: Any) -> ActResult:
        """As PolicyClient.act, over the websocket."""
        import websockets

        message = _pack(build_request(image, instruction, unnorm_key, **fields))
        for attempt in range(self.retries + 1):
            try:
                if self._ws is None:
                    self.connect()
                self._ws.send(message)
                reply = self._ws.recv(timeout=self.timeout)
                break
            except (OSError, TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake) as e:
                self.close()
                if attempt == self.retries or getattr(getattr(e, "response", None), "status_code", None) in (401, 403):
                    raise
                time.sleep(self.backoff_s * 2**attempt)
        if isinstance(reply, str):  # errors come back as a JSON text frame {"error", "status", "field"}
            raise _server_error(None, reply)
        return ActResult.from_envelope(_unpack(reply))

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            finally:
                self._ws = None

    def __enter__(self) -> "WebsocketPolicyClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _pack(obj: Any) -> bytes:
    """msgpack with numpy arrays in openpi's format."""
    import msgpack

    def default(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return {b"__ndarray__": True, b"data": o.tobytes(), b"dtype": o.dtype.str, b"shape": o.shape}
        if isinstance(o, np.generic):
            return {b"__npgeneric__": True, b"data": o.item(), b"dtype": o.dtype.str}
        raise TypeError(f"cannot pack {type(o).__name__}")

    return msgpack.packb(obj, default=default)


def _unpack(data: bytes) -> Any:
    import msgpack

    def hook(obj: dict) -> Any:
        if b"__ndarray__" in obj:
            return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
        if b"__npgeneric__" in obj:
            return np.dtype(obj[b"dtype"]).type(obj[b"data"])
        return obj

    return msgpack.unpackb(data, object_hook=hook, raw=False)
