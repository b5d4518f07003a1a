"""A request id in every log line: a contextvar set by the request-id middleware (which also
echoes it as `X-Request-ID`) and a logging filter that stamps it on every record, uvicorn's
access lines included (uvicorn logs them from the request's own task)."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
HEADER = "x-request-id"
# A client may pass its own id (for tracing across services) if it is short and plain.
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


def current_request_id() -> str:
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER.encode(), b"").decode("latin-1")
        request_id = given if _ACCEPTED.match(given) else uuid.uuid4().hex
        token = _request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


def log_config(level: str = "info") -> dict[str, Any]:
    """dictConfig for uvicorn and the service: one format, the request id on every line."""
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["rid"],
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"rid": {"()": RequestIdFilter}},
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {"default": handler},
        "loggers": {
            "": {"handlers": ["default"], "level": level.upper()},
            "uvicorn": {"level": level.upper()},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"level": level.upper()},
        },
    }
