"""Input limits: request body size (checked before the app sees a byte), body read timeout,
image pixels (decompression bombs, through models.data.images.open_image), text length."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping

from PIL import Image
from starlette.types import Receive

from models.inference import ImageError, open_image
from service.problems import Problem, in_words


class Refused(Exception):
    """A request refused before the app sees it (413, 408, 400); answered as a problem."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def read_body(headers: Mapping[bytes, bytes], receive: Receive, max_bytes: int,
                    timeout_s: float) -> bytes | None:
    """The whole body, bounded by `max_bytes` and `timeout_s`; None if the client went away.

    Buffering is cheap at these sizes and makes the limit exact: a lying or absent
    Content-Length, chunked uploads and slow clients all end in a 413/408 problem before any
    parser runs, instead of an error raised from inside a form or JSON parser.
    """
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise Refused(413, _too_large(int(declared), max_bytes))
    try:
        async with asyncio.timeout(timeout_s):
            body = await _read(receive, max_bytes)
    except TimeoutError as err:
        raise Refused(408, f"request body not received within {timeout_s:g} s") from err
    if body is not None and _is_json(headers) and not _utf8(body):
        raise Refused(400, "the JSON body is not valid UTF-8 (RFC 8259)")
    return body


async def _read(receive: Receive, max_bytes: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise Refused(413, _too_large(size, max_bytes, at_least=True))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(size: int, max_bytes: int, at_least: bool = False) -> str:
    return (f"request body of {'more than ' if at_least else ''}{size} bytes exceeds the "
            f"limit of {max_bytes} bytes")


def media_type(content_type: str) -> str:
    """The one parse of a Content-Type header: `multipart/form-data`, `application/json`
    (also for any `+json` type), another type as given, or "" when there is none."""
    kind = content_type.split(";")[0].strip().lower()
    return "application/json" if kind.endswith("+json") else kind


def _is_json(headers: Mapping[bytes, bytes]) -> bool:
    return media_type(headers.get(b"content-type", b"").decode("latin-1")) == "application/json"


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
        message = in_words(str(err).removeprefix("<bytes>: "))
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
