"""Input limits: request body size (checked before the app sees a byte), body read timeout,
image pixels (decompression bombs, through models.data.images.open_image), text length."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from http import HTTPStatus

from PIL import Image
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.data.images import ImageError, open_image
from service.logging import current_request_id
from service.problems import MEDIA_TYPE, Problem


class BodyLimitMiddleware:
    """Reads the whole body (bounded by `max_bytes` and `timeout_s`) before calling the app.

    Buffering is cheap at these sizes and makes the limit exact: a lying or absent
    Content-Length, chunked uploads and slow clients all end in a 413/408 problem before any
    parser runs, instead of an error raised from inside a form or JSON parser.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send, 413, self._too_large(int(declared)))
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                body, disconnected = await self._read(receive)
        except TooLarge as err:
            await self._refuse(scope, send, 413, str(err))
            return
        except TimeoutError:
            await self._refuse(scope, send, 408, f"request body not received within "
                                                 f"{self.timeout_s:g} s")
            return
        if disconnected:
            return
        if _is_json(scope) and not _utf8(body):
            await self._refuse(scope, send, 400, "the JSON body is not valid UTF-8 (RFC 8259)")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise TooLarge(self._too_large(size, at_least=True))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False

    def _too_large(self, size: int, at_least: bool = False) -> str:
        return (f"request body of {'more than ' if at_least else ''}{size} bytes exceeds the "
                f"limit of {self.max_bytes} bytes")

    async def _refuse(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        body = json.dumps({
            "type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail, "instance": scope.get("path", ""),
            "request_id": current_request_id(),
        }).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


class TooLarge(Exception):
    pass


def _is_json(scope: Scope) -> bool:
    kind = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
    return kind == b"application/json" or kind.endswith(b"+json")


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes -> RGB image, or a 413 (too many pixels) / 422 (unreadable) problem."""
    if not data:
        raise Problem(422, "empty image (0 bytes)")
    try:
        return open_image(data, max_pixels=max_pixels)
    except ImageError as err:
        message = str(err).removeprefix("<bytes>: ")
        if "exceeds" in message or "decompression bomb" in message.lower():
            raise Problem(413, f"image too large: {message}") from err
        raise Problem(422, f"image not usable: {message}") from err


def decode_base64(value: str, field: str = "image_base64") -> bytes:
    """Standard or URL-safe base64, with or without a `data:...;base64,` prefix."""
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    value = "".join(value.split())
    try:
        if "-" in value or "_" in value:
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError) as err:
        raise Problem(422, f"{field} is not valid base64 ({err})") from err


def check_text(text: str, max_chars: int, field: str = "text") -> str:
    if not text.strip():
        raise Problem(422, f"{field} is empty")
    if len(text) > max_chars:
        raise Problem(413, f"{field} has {len(text)} characters; the limit is {max_chars}")
    if "\x00" in text:
        raise Problem(422, f"{field} contains a NUL character")
    return text
