"""Real servers for the serve suite, each `clearvla serve` in a subprocess on a free loopback port:

- `server`: a tiny action-token checkpoint with a token, per-robot limits and a small body limit (so "too large" is
  cheap to test);
- `compat_server`: a tiny chunk checkpoint (K = CHUNK actions per answer) with `--openvla-compat` and no token, as
  OpenVLA's and openpi's example clients expect."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests

TOKEN = "serve-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY_MB = 2
CHUNK = 8
STATS = {
    key: {"action": {"q01": [-0.02] * 3 + [-0.1] * 3 + [0.0], "q99": [0.02] * 3 + [0.1] * 3 + [1.0], "mask": [True] * 6 + [False]}}
    for key in ("workcell", "bridge_orig")
}
LIMITS = {
    "default": "arm",
    "robots": {
        "arm": {"max_translation": 0.01, "max_rotation": 0.05},
        "boxed": {"workspace": {"low": [-0.5, -0.5, 0.0], "high": [0.5, 0.5, 0.5]}},
        "free": {},
    },
}


@dataclass(frozen=True)
class Server:
    """The running server: its URLs, token and limits (tests cannot import conftest under importlib mode)."""

    url: str
    ws_url: str
    checkpoint: Path
    process: subprocess.Popen
    log: Path
    token: str | None = TOKEN
    auth: dict = field(default_factory=lambda: dict(AUTH))
    limits: dict = field(default_factory=lambda: LIMITS)
    max_body_mb: float = MAX_BODY_MB


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def serve_checkpoint(tmp_path_factory) -> Path:
    from clearvla.models.vla import VLA

    vla = VLA.from_config("tiny", image_size=32, seed=0, norm_stats=STATS)
    return vla.save_pretrained(tmp_path_factory.mktemp("serve") / "tiny-serve")


@pytest.fixture(scope="session")
def serve_model(serve_checkpoint):
    """The same checkpoint loaded in the test process, to compare the server's actions with."""
    from clearvla.models.vla import VLA

    return VLA.from_pretrained(serve_checkpoint).eval()


@pytest.fixture(scope="session")
def chunk_checkpoint(tmp_path_factory) -> Path:
    from clearvla.models.vla import VLA

    # one normalisation key: openpi clients send none, and the server picks the only one
    vla = VLA.from_config("tiny", image_size=32, seed=1, norm_stats={"workcell": STATS["workcell"]}, action_chunk=CHUNK)
    return vla.save_pretrained(tmp_path_factory.mktemp("serve") / "tiny-chunk")


@pytest.fixture(scope="session")
def chunk_model(chunk_checkpoint):
    from clearvla.models.vla import VLA

    return VLA.from_pretrained(chunk_checkpoint).eval()


@pytest.fixture(scope="session")
def server(serve_checkpoint, tmp_path_factory) -> Server:
    limits = tmp_path_factory.mktemp("limits") / "limits.json"
    limits.write_text(json.dumps(LIMITS))
    yield from _serve(serve_checkpoint, tmp_path_factory, ["--token", TOKEN, "--limits", str(limits), "--max-batch-size", "8",
                                                           "--max-wait-ms", "30", "--max-body-mb", str(MAX_BODY_MB),
                                                           "--max-image-side", "512"])


@pytest.fixture(scope="session")
def compat_server(chunk_checkpoint, tmp_path_factory) -> Server:
    yield from _serve(chunk_checkpoint, tmp_path_factory, ["--openvla-compat", "--max-body-mb", str(MAX_BODY_MB),
                                                           "--max-image-side", "512"], token=None)


def _serve(checkpoint: Path, tmp_path_factory, options: list[str], token: str | None = TOKEN):
    """Start `clearvla serve` on a free port, yield its Server once /healthz answers, stop it, and fail if it logged
    a traceback."""
    port = _free_port()
    log = tmp_path_factory.mktemp("log") / "server.log"
    cmd = [sys.executable, "-m", "clearvla.cli", "serve", "--checkpoint", str(checkpoint), "--port", str(port), *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        start = time.monotonic()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() - start > 120:
                pytest.fail(f"server did not come up in 120 s:\n{log.read_text()}")
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        yield Server(url, f"ws://127.0.0.1:{port}/ws", checkpoint, proc, log, token=token, auth=auth)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        text = log.read_text()
        assert "Traceback" not in text, f"the server logged a traceback:\n{text}"


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
