"""Errors a server request can end in. Each carries the HTTP status it answers with, so one handler turns any of
them into `{"error": message, "field": ..., "status": ...}`; every one is a 4xx except `Overloaded` (503)."""

from __future__ import annotations

from typing import Any

from clearvla.errors import ClearVLAError, InputError


class RequestError(InputError):
    """A request that is malformed (400), too large (413) or invalid for this model or robot (422)."""

    def __init__(self, message: str, *, status: int = 422, field: str | None = None) -> None:
        assert 400 <= status < 500, f"a RequestError is a client error, got status {status}"
        super().__init__(message)
        self.status = status
        self.field = field


class Unauthorized(ClearVLAError):
    """No or a wrong bearer token (401)."""

    status = 401
    field = None


class DeadlineExceeded(ClearVLAError):
    """The request's deadline passed before its action could be returned; it was dropped, not executed late (408)."""

    status = 408
    field = "deadline_ms"


class Overloaded(ClearVLAError, RuntimeError):
    """The batching queue is full (503, with Retry-After); the client may retry."""

    status = 503
    field = None


def error_status(error: BaseException) -> int:
    """The HTTP status for an error: its own, 422 for any other user-facing clearvla error, else 500."""
    status = getattr(error, "status", None)
    if isinstance(status, int):
        return status
    return 422 if isinstance(error, ClearVLAError) else 500


def error_body(error: BaseException) -> dict[str, Any]:
    """The JSON error object: `{"error": message, "status": code, "field": name or None}`. Internal errors say
    nothing about their cause (that goes to the server log)."""
    status = error_status(error)
    message = str(error) if status < 500 or isinstance(error, ClearVLAError) else "internal server error; see the server log"
    return {"type": "error", "error": message, "status": status, "field": getattr(error, "field", None)}
