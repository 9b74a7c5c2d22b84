"""Bearer tokens: required everywhere but /healthz, compared in constant time, on REST and the websocket."""

from __future__ import annotations

import hmac

import pytest
import requests
import websockets
import websockets.sync.client

from clearvla.client import PolicyClient, ServerError
from clearvla.serve import app as serve_app


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer"}, {"Authorization": "serve-test-token"}])
@pytest.mark.parametrize("method, path", [("POST", "/act"), ("POST", "/v1/act"), ("GET", "/metadata"), ("GET", "/stats")])
def test_requests_without_the_token_get_401(server, headers, method, path):
    response = requests.request(method, server.url + path, headers=headers, json={}, timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "bearer token" in response.json()["error"]


def test_healthz_is_open_and_the_token_works(server, image):
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    assert requests.get(server.url + "/metadata", headers=server.auth, timeout=10).status_code == 200
    assert requests.get(server.url + "/metadata", headers={"Authorization": f"bearer {server.token}"}, timeout=10).status_code == 200
    with pytest.raises(ServerError) as info:
        PolicyClient(server.url, token="not-the-token", timeout=30).act(image, "go", "workcell")
    assert info.value.status == 401


def test_websocket_handshake_needs_the_token(server):
    with pytest.raises(websockets.InvalidStatus) as info:
        websockets.sync.client.connect(server.ws_url, additional_headers={"Authorization": "Bearer nope"}, open_timeout=10)
    assert info.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus):
        websockets.sync.client.connect(server.ws_url, open_timeout=10)
    # openpi's client sends "Api-Key <key>"; accepted too
    with websockets.sync.client.connect(server.ws_url, additional_headers={"Authorization": f"Api-Key {server.token}"},
                                        open_timeout=10) as ws:
        assert isinstance(ws.recv(timeout=10), bytes)  # the metadata frame


def test_token_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(serve_app.hmac, "compare_digest", spy)
    assert serve_app.authorized("Bearer s3cret-token", "s3cret-token")
    assert not serve_app.authorized("Bearer s3cret-tokeN", "s3cret-token")
    assert not serve_app.authorized("Bearer s3cret-tökeN", "s3cret-token")  # non-ASCII must not raise
    assert not serve_app.authorized(None, "s3cret-token") and serve_app.authorized(None, None)
    assert len(calls) == 3 and all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


def test_unknown_routes_answer_in_the_error_shape(server):
    missing = requests.get(server.url + "/nope", timeout=10)
    wrong_method = requests.get(server.url + "/act", headers=server.auth, timeout=10)
    assert (missing.status_code, wrong_method.status_code) == (404, 405)
    assert missing.json()["error"] == "Not Found: GET /nope" and wrong_method.json()["status"] == 405
    assert requests.get(server.url + "/docs", timeout=10).status_code == 404  # no unauthenticated API docs
