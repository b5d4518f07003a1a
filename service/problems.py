"""RFC 9457 problem details: every error the service answers is `application/problem+json`.

Routes raise `Problem`; the handlers below turn it, FastAPI's validation errors, Starlette's
HTTP errors (404, 405, ...), the service's own error kinds (one handler each: an overloaded
queue, a request past its timeout, an index serving another checkpoint than the encoder) and
anything unexpected into the same shape, with the request id.
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from service.batching import Overloaded
from service.logging import current_request_id
from service.vectors import CheckpointMismatch

log = logging.getLogger("service.problems")
MEDIA_TYPE = "application/problem+json"
# Python object reprs that library messages carry: `<_io.BytesIO object at 0x...>` (dropped),
# `<class 'str'>` (its name kept)
_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>|<class '(?:[\w.]+\.)?(\w+)'>")


class Problem(Exception):
    """An error answered as problem details; `extra` members are added to the body."""

    def __init__(self, status: int, detail: str, *, title: str | None = None,
                 type_: str = "about:blank", headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type_
        self.headers = headers
        self.extra = extra


def problem_response(request: Request, status: int, detail: str, *, title: str | None = None,
                     type_: str = "about:blank", headers: dict[str, str] | None = None,
                     **extra: Any) -> JSONResponse:
    body = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": current_request_id(),
        **extra,
    }
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers,
                        media_type=MEDIA_TYPE)


async def send_problem(scope: Scope, send: Send, status: int, detail: str, *,
                       close: bool = True) -> None:
    """A problem answered straight over ASGI by the edge middleware (service.edge): a refusal
    before the app has run closes the connection, as the rest of the body may be on its way."""
    body = json.dumps({
        "type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
        "detail": detail, "instance": scope.get("path", ""), "request_id": current_request_id(),
    }).encode()
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"connection", b"close")] if close else headers})
    await send({"type": "http.response.body", "body": body})


async def send_unexpected(scope: Scope, send: Send, exc: Exception) -> None:
    """The 500 for an error no handler took, logged and answered while the request id is
    still bound (call it from the `except` block): Starlette's ServerErrorMiddleware, the
    outermost layer, would only run after the edge middleware has unbound it."""
    log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
    await send_problem(scope, send, 500, _unexpected_detail(exc), close=False)


def _unexpected_detail(exc: Exception) -> str:
    return (f"internal error ({type(exc).__name__}); quote request id {current_request_id()} "
            "when reporting it")


async def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    if exc.status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.detail)
    return problem_response(request, exc.status, exc.detail, title=exc.title, type_=exc.type,
                            headers=exc.headers, **exc.extra)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == HTTPStatus.NOT_FOUND.phrase:
        detail = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"method {request.method} not allowed on {request.url.path}"
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(request, exc.status_code, detail, headers=headers)


def in_words(message: str) -> str:
    """`message` without the Python object reprs library errors put in it."""
    return _REPR.sub(lambda match: match[1] or "", message)


def _describe(error: dict[str, Any]) -> str:
    """One validation error in words, named by where it is (`k`, `query k`, `items.0.text`)."""
    loc = [str(part) for part in error.get("loc", ())]
    message = in_words(str(error.get("msg", "invalid")))
    if error.get("type") == "json_invalid" and len(loc) == 2 and loc[1].isdigit():
        reason = (error.get("ctx") or {}).get("error", "invalid")
        return f"the body is not valid JSON: {reason} (at character {loc[1]})"
    if "Expected UploadFile" in message:
        message = "must be a file upload (a part with a filename), not a plain field"
    where = ".".join(loc[1:]) if loc[:1] == ["body"] else " ".join(loc)
    return f"{where or 'the body'}: {message}"


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {**{key: error[key] for key in ("loc", "type") if key in error},
         "msg": in_words(str(error.get("msg", "invalid")))}
        for error in exc.errors()
    ]
    detail = "; ".join(_describe(error) for error in exc.errors()[:5]) or "invalid request"
    return problem_response(request, 422, detail, title="Invalid request", errors=errors)


async def _overloaded(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, 503, f"overloaded: {exc}", headers={"Retry-After": "1"})


async def _timeout(request: Request, exc: Exception) -> JSONResponse:
    seconds = request.app.state.settings.request_timeout_s
    detail = f"{request.method} {request.url.path} did not finish within {seconds:g} s"
    log.warning("%s", detail)
    return problem_response(request, 503, detail, headers={"Retry-After": "1"})


async def _checkpoint_mismatch(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CheckpointMismatch)
    if exc.loading:
        return problem_response(request, 503, exc.detail, headers={"Retry-After": "5"})
    return problem_response(request, 409, exc.detail, title="Index and encoder disagree")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """The last resort, for an error outside the edge middleware (see send_unexpected)."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(request, 500, _unexpected_detail(exc))


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(TimeoutError, _timeout)
    app.add_exception_handler(CheckpointMismatch, _checkpoint_mismatch)
    app.add_exception_handler(Exception, _unexpected)


# OpenAPI: the problem schema every error response shares.
PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the problem statuses a route may answer."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }
