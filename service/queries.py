"""Turning requests into validated queries and items: k, label filters, texts, images from a
multipart upload or base64 JSON. Each input is checked once, here, at the edge; routes stay
thin and the use cases behind them take what these functions return. Every refusal here is a
4xx problem."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from service.items import ImageInput, ItemIn
from service.limits import check_text, decode_base64, decode_image, media_type
from service.problems import Problem
from service.schemas import ImageQuery
from service.schemas import ItemIn as ItemBody
from service.settings import Settings

M = TypeVar("M", bound=BaseModel)
IMAGE_PART_TYPES = ("image/", "application/octet-stream")
MAX_LABELS, MAX_LABEL_CHARS = 16, 200


def check_k(k: int, settings: Settings) -> int:
    if not 1 <= k <= settings.max_k:
        raise Problem(422, f"k must be between 1 and {settings.max_k}, got {k}")
    return k


def check_filter(labels: Mapping[str, str] | None, levels: Sequence[str]) -> dict[str, str] | None:
    if not labels:
        return None
    unknown = sorted(set(labels) - set(levels))
    if unknown:
        known = ", ".join(levels) if levels else "none (this index has no label levels)"
        raise Problem(422, f"unknown label level(s) {unknown}; levels are: {known}")
    for level, value in labels.items():
        if not isinstance(value, str) or not value or len(value) > MAX_LABEL_CHARS:
            raise Problem(422, f"label filter {level!r} must be a non-empty string of at most "
                               f"{MAX_LABEL_CHARS} characters")
    return dict(labels)


def check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    if len(labels) > MAX_LABELS:
        raise Problem(422, f"at most {MAX_LABELS} labels per item, got {len(labels)}")
    for label in labels:
        if not label.strip() or len(label) > MAX_LABEL_CHARS or "\x00" in label:
            raise Problem(422, f"labels must be non-empty strings of at most {MAX_LABEL_CHARS} "
                               f"characters, got {label[:40]!r}")
    return tuple(labels)


def parse_model(model: type[M], body: bytes) -> M:
    """JSON body -> model, with FastAPI's own 422 shape on failure."""
    try:
        return model.model_validate_json(body)
    except ValidationError as err:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in err.errors()]
        raise RequestValidationError(errors) from err


def content_kind(request: Request) -> str:
    """"json" or "multipart" (a 415 problem otherwise), for routes that take either."""
    kind = media_type(request.headers.get("content-type", ""))
    if kind == "multipart/form-data":
        return "multipart"
    if kind == "application/json":
        return "json"
    raise Problem(415, f"expected multipart/form-data (field 'file') or application/json, "
                       f"got {kind or 'no Content-Type'!r}")


class _StrictMultiPartParser(MultiPartParser):
    """Starlette decodes a non-UTF-8 text field as Latin-1 without a word; refuse it instead
    (a caption of mojibake would be indexed for ever)."""

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                bytes(part.data).decode(self._charset)
            except (UnicodeDecodeError, LookupError) as err:
                raise MultiPartException(
                    f"multipart field {part.field_name!r} is not valid {self._charset}") from err
        super().on_part_end()


async def read_form(request: Request) -> FormData:
    try:
        async with aclosing(request.stream()) as stream:
            parser = _StrictMultiPartParser(request.headers, stream, max_files=4, max_fields=32)
            return await parser.parse()
    except MultiPartException as err:
        raise Problem(422, f"malformed multipart body: {err.message}") from err


async def upload_bytes(form: FormData, field: str = "file", required: bool = True
                       ) -> bytes | None:
    part = form.get(field)
    if part is None:
        if required:
            raise Problem(422, f"multipart field {field!r} (the image file) is missing")
        return None
    if not isinstance(part, UploadFile):
        raise Problem(422, f"multipart field {field!r} must be a file upload")
    kind = (part.content_type or "application/octet-stream").lower()
    try:
        if not kind.startswith(IMAGE_PART_TYPES):
            raise Problem(415, f"the uploaded file is {kind!r}; expected an image/* type")
        return await part.read()
    finally:
        await part.close()


def form_text(form: FormData, field: str) -> str | None:
    value = form.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Problem(422, f"multipart field {field!r} must be a plain field, not a file")
    return value


def form_int(value: str | None, field: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise Problem(422, f"{field} must be an integer, got {value[:40]!r}") from err


def form_bool(value: str | None, field: str) -> bool:
    if value is None or value == "":
        return False
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise Problem(422, f"{field} must be true or false, got {value[:40]!r}")


def form_json(value: str | None, field: str, expected: type) -> Any:
    """Label fields in forms are JSON: {"level": "value"} filters, ["coarse", "fine"] labels."""
    if value is None or value == "":
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise Problem(422, f"{field} must be JSON ({err.msg})") from err
    if not isinstance(parsed, expected) or (
        isinstance(parsed, dict) and not all(isinstance(v, str) for v in parsed.values())
    ) or (isinstance(parsed, list) and not all(isinstance(v, str) for v in parsed)):
        raise Problem(422, f"{field} must be a JSON {expected.__name__} of strings")
    return parsed


async def load_image(data: bytes, settings: Settings) -> ImageInput:
    """Decode off the event loop (a large PNG takes tens of milliseconds)."""
    image = await asyncio.to_thread(decode_image, data, settings.max_image_pixels)
    return ImageInput(data, image)


async def load_base64_image(value: str, settings: Settings) -> ImageInput:
    if len(value) > settings.max_body_bytes * 4 // 3 + 16:
        raise Problem(413, "image_base64 is larger than the body limit")
    return await load_image(decode_base64(value), settings)


def text_query(text: str, settings: Settings) -> str:
    return check_text(text, settings.max_text_chars)


@dataclass(frozen=True)
class SearchIn:
    """A search as the edge validated it."""
    query: str | Image.Image
    k: int
    labels: dict[str, str] | None
    rerank: bool


def text_search(text: str, k: int, labels: dict[str, str] | None, rerank: bool,
                settings: Settings) -> SearchIn:
    return SearchIn(text_query(text, settings), check_k(k, settings), labels, rerank)


async def image_search(request: Request, settings: Settings) -> SearchIn:
    """A multipart upload (field `file`; k, labels, rerank as form fields or query parameters)
    or JSON {"image_base64", "k", "labels", "rerank"}."""
    if content_kind(request) == "json":
        body = parse_model(ImageQuery, await request.body())
        image = await load_base64_image(body.image_base64, settings)
        return SearchIn(image.image, check_k(body.k, settings), body.labels, body.rerank)
    form = await read_form(request)
    data = await upload_bytes(form)
    assert data is not None
    params = request.query_params

    def field(name: str) -> str | None:
        value = form_text(form, name)
        return value if value is not None else params.get(name)

    k = check_k(form_int(field("k"), "k", 10), settings)
    labels = form_json(field("labels"), "labels", dict)
    rerank = form_bool(field("rerank"), "rerank")
    image = await load_image(data, settings)
    return SearchIn(image.image, k, labels, rerank)


async def item_in(text: str | None, image_base64: str | None, labels: Sequence[str],
                  settings: Settings) -> ItemIn:
    """One item of a JSON body."""
    if text is None and image_base64 is None:
        raise Problem(422, "an item needs a text, an image, or both")
    image = None if image_base64 is None else await load_base64_image(image_base64, settings)
    return ItemIn(None if text is None else text_query(text, settings), image,
                  check_labels(labels))


async def item_from_request(request: Request, settings: Settings) -> ItemIn:
    """POST /v1/items: JSON {"text", "image_base64", "labels"} or a multipart form (fields
    `file`, `text`, `labels` as a JSON list)."""
    if content_kind(request) == "json":
        body = parse_model(ItemBody, await request.body())
        return await item_in(body.text, body.image_base64, body.labels, settings)
    form = await read_form(request)
    data = await upload_bytes(form, required=False)
    labels = form_json(form_text(form, "labels"), "labels", list) or []
    text = form_text(form, "text")
    if data is None and text is None:
        raise Problem(422, "an item needs a 'file', a 'text', or both")
    image = None if data is None else await load_image(data, settings)
    return ItemIn(None if text is None else text_query(text, settings), image,
                  check_labels(labels))
