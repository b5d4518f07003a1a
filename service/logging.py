"""A request id in every log line: a contextvar bound by the edge middleware (service.edge,
which also echoes it as `X-Request-ID`) and a logging filter that stamps it on every record,
uvicorn's access lines included (uvicorn logs them from the request's own task)."""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import re
from typing import Any

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
HEADER = b"x-request-id"
# A client may pass its own id (for tracing across services) if it is short and plain.
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# New ids: this process's random prefix and a counter, not uuid4(): that reads the OS's random
# source for every request, a system call that drops the GIL, which the event loop then waits
# for behind the encoder workers under load; an id needs to be unique, not unpredictable.
_PREFIX = os.urandom(8).hex()
_NEXT = itertools.count()  # next() on it is atomic under the GIL
FORMAT = "%(asctime)s %(levelname)s %(process)d [%(request_id)s] %(name)s: %(message)s"


def current_request_id() -> str:
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


def accept_request_id(given: bytes | None) -> str:
    """The client's X-Request-ID if it is short and plain, otherwise a new one."""
    text = (given or b"").decode("latin-1")
    return text if _ACCEPTED.match(text) else f"{_PREFIX}{next(_NEXT):016x}"


def bind_request_id(request_id: str) -> contextvars.Token[str]:
    return _request_id.set(request_id)


def unbind_request_id(token: contextvars.Token[str]) -> None:
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
