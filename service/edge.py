"""The edge: the one ASGI middleware every HTTP request passes through before the app.

It gives the request its id (service.logging: on every log line, in every answer's
`X-Request-ID`), holds the body to the size and time limits before any parser runs
(service.limits), answers an error no handler took as a 500 problem with that id, and times
the answer for the per-route Prometheus metrics (service.metrics).

One pure-ASGI layer, one header scan and one `send` wrapper per request, where there were
three middlewares and prometheus-fastapi-instrumentator (which matched every route's regex
again to name the handler): on 2 shared cores the web layer's CPU per search is taken straight
from the encoder (bench/results/README.md: the web-layer diagnostic).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.limits import Refused, read_body
from service.logging import HEADER, accept_request_id, bind_request_id, unbind_request_id
from service.metrics import Metrics
from service.problems import send_problem, send_unexpected

BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float,
                 metrics: Metrics) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = scope.get("root_path", "")  # a mount rewrites it in place
        headers = dict(scope["headers"])
        request_id = accept_request_id(headers.get(HEADER))
        echoed = (HEADER, request_id.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        token = bind_request_id(request_id)
        try:
            await self._answer(scope, headers, receive, send_with_id)
        except Exception as err:
            if status:  # the answer had started: nothing more can be said to the client
                raise
            await send_unexpected(scope, send_with_id, err)
        finally:
            unbind_request_id(token)
            if status:  # 0: the client left before its body arrived; nothing was answered
                self.metrics.observe_request(handler(scope, root_path), scope["method"],
                                             status, time.perf_counter() - started)

    async def _answer(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive,
                      send: Send) -> None:
        if scope["method"] in BODYLESS:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(headers, receive, self.max_bytes, self.timeout_s)
        except Refused as refusal:
            await send_problem(scope, send, refusal.status, refusal.detail)
            return
        if body is None:
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The app's `receive`: the buffered body once, then the client's own (disconnects)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def handler(scope: Scope, root_path: str) -> str:
    """The route template that answered (a bounded label set), or "none".

    FastAPI leaves the route it ran in the scope; only what it did not run (mounts, the docs
    pages, 404s, requests refused before the app) is matched here, off the hot path."""
    route: Any = scope.get("route")
    if route is not None:
        return str(route.path)
    unrouted = {**scope, "root_path": root_path}
    for candidate in _routes(getattr(scope.get("app"), "routes", ())):
        if candidate.matches(unrouted)[0] is Match.FULL:
            return str(candidate.path)
    return "none"


def _routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Matchable routes with a path: newer FastAPI keeps each `include_router` as one entry
    whose routes, prefixes applied, come from `effective_route_contexts()`."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            yield from (getattr(c, "starlette_route", None) or c for c in contexts())
        elif hasattr(route, "path"):
            yield route
