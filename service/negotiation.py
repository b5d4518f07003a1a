"""Content negotiation by route: one path and method may carry a JSON route and an upload route,
each declared the ordinary FastAPI way (a pydantic body; File()/Form() parameters), and the
request's Content-Type picks the one that runs. The generated OpenAPI describes both request
bodies under the one operation.

`ByMediaType` is the route class of every router: a route whose body is JSON answers
`application/json` (and `+json`) requests, one whose body is a form `multipart/form-data`, one
without a body any. A request no route of its path takes gets a 415 problem naming the types
the path takes. A multipart body is kept on the request before the form parser reads it, so
that `check_utf8_fields` can tell a field that was valid UTF-8 from one Starlette decoded as
Latin-1 (a caption of mojibake would be indexed for ever).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, ClassVar

from fastapi import FastAPI, Request, Response, params
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from service.limits import media_type
from service.problems import Problem

JSON, MULTIPART = "application/json", "multipart/form-data"


def request_media_type(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return media_type(value.decode("latin-1"))
    return ""


class ByMediaType(APIRoute):
    # (path, method) -> the media types its routes take, for the 415's detail
    _taken: ClassVar[dict[tuple[str, str], set[str]]] = defaultdict(set)

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if self.body_media_type is not None:
            for method in self.methods or ():
                self._taken[(self.path, method)].add(self.body_media_type)

    @property
    def body_media_type(self) -> str | None:
        """What the body is declared as: JSON, a multipart form, or None (no body)."""
        body = self.body_field
        if body is None:
            return None
        return MULTIPART if isinstance(body.field_info, params.Form) else JSON

    def takes(self, scope: Scope) -> bool:
        return self.body_media_type is None or \
            request_media_type(scope) == self.body_media_type

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.FULL and not self.takes(scope):
            return Match.PARTIAL, child  # another route of this path may take it
        return match, child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in (self.methods or ()) and not self.takes(scope):
            taken = " or ".join(sorted(self._taken[(self.path, scope["method"])]))
            got = request_media_type(scope) or "no Content-Type"
            raise Problem(415, f"{scope['method']} {self.path} takes {taken}, got {got!r}")
        await super().handle(scope, receive, send)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_media_type != MULTIPART:
            return handler

        async def keep_body(request: Request) -> Response:
            await request.body()  # kept on the request; the form parser reads it from there
            return await handler(request)

        return keep_body


async def check_utf8_fields(request: Request) -> None:
    """Refuse a multipart text field that is not valid UTF-8: Starlette decodes such a field
    as Latin-1, whose UTF-8 encoding then appears nowhere in the body."""
    body = await request.body()
    for name, value in (await request.form()).multi_items():
        if isinstance(value, str) and value.encode("utf-8") not in body:
            raise Problem(422, f"multipart field {name!r} is not valid UTF-8")


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """The app's FastAPI routes, included routers walked."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            yield from api_routes(context.original_route for context in contexts())
        elif isinstance(route, APIRoute):
            yield route


def negotiated_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, where an operation carried by several routes (one per media type)
    lists the request body of each; FastAPI alone keeps the last route's."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    carriers: dict[tuple[str, str], list[APIRoute]] = defaultdict(list)
    for route in api_routes(app.routes):
        if route.include_in_schema:
            for method in route.methods or ():
                carriers[(route.path_format, method.lower())].append(route)
    for (path, method), routes in carriers.items():
        operation = schema["paths"][path][method]
        for route in routes[:-1]:
            alone = get_openapi(title=app.title, version=app.version, routes=[route])
            body = alone["paths"][path][method].get("requestBody")
            if body is not None:
                operation.setdefault("requestBody", {"required": True, "content": {}})
                operation["requestBody"]["content"].update(body["content"])
            for name, part in alone.get("components", {}).get("schemas", {}).items():
                schema.setdefault("components", {}).setdefault("schemas", {})[name] = part
    app.openapi_schema = schema
    return schema
