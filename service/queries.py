"""Turning requests into validated queries and items: k, label and metadata filters, keys and
metadata, texts, images from a multipart upload or base64 JSON. Each input is checked once,
here, at the edge; routes stay thin and the use cases behind them take what these functions
return. Every refusal here is a 4xx problem."""

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

from index.payload import MAX_KEY, TEXT_KEY, check_key, check_where, dump_metadata, text_key
from service.items import ImageInput, ItemIn
from service.limits import check_text, decode_base64, decode_image, media_type
from service.problems import Problem
from service.schemas import ImageQuery, Modality, SimilarQuery
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


def check_metadata_filter(where: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """`where` as sorted (field, canonical value) pairs (index.payload.canonical: equal for
    equal JSON values, so searches with equal filters share one batch)."""
    try:
        return tuple(sorted(check_where(where).items()))
    except ValueError as err:
        raise Problem(422, f"where: {err}") from err


def check_key_and_metadata(key: object, metadata: object, pair: bool = False
                           ) -> tuple[str | None, dict[str, Any]]:
    """The index layer's rules (index.payload), answered as a 422 with the reason. A pair's
    text is keyed `key + ":text"`, which must fit the key limit too."""
    try:
        checked = check_key(key)
        if checked is not None and pair and len(text_key(checked)) > MAX_KEY:
            raise ValueError(f"the key of an image-text pair may have at most "
                             f"{MAX_KEY - len(TEXT_KEY)} characters (its text is keyed "
                             f"<key>{TEXT_KEY})")
        stored = json.loads(dump_metadata({} if metadata is None else metadata))
    except ValueError as err:
        raise Problem(422, str(err)) from err
    return checked, stored


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


def form_object(value: str | None, field: str) -> Any:
    """A JSON object form field (metadata, where); its values are checked by the caller."""
    if value is None or value == "":
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise Problem(422, f"{field} must be a JSON object ({err.msg})") from err
    if not isinstance(parsed, dict):
        raise Problem(422, f"{field} must be a JSON object, not {type(parsed).__name__}")
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
    where: tuple[tuple[str, str], ...] = ()  # check_metadata_filter's pairs


def text_search(text: str, k: int, labels: dict[str, str] | None,
                where: Mapping[str, Any] | None, rerank: bool, settings: Settings) -> SearchIn:
    return SearchIn(text_query(text, settings), check_k(k, settings), labels, rerank,
                    check_metadata_filter(where))


@dataclass(frozen=True)
class SimilarIn:
    """A search by a stored item (exactly one of item_id and key) as the edge validated it."""
    item_id: int | None
    key: str | None
    k: int
    modality: Modality
    labels: dict[str, str] | None
    where: tuple[tuple[str, str], ...]

def similar_search(query: SimilarQuery, settings: Settings) -> SimilarIn:
    if (query.id is None) == (query.key is None):
        raise Problem(422, "name the item by exactly one of 'id' and 'key'")
    key, _ = check_key_and_metadata(query.key, None)
    return SimilarIn(query.id, key, check_k(query.k, settings), query.modality, query.labels,
                     check_metadata_filter(query.where))


async def image_search(request: Request, settings: Settings) -> SearchIn:
    """A multipart upload (field `file`; k, labels, where, rerank as form fields or query
    parameters; labels and where JSON-encoded) or JSON {"image_base64", "k", "labels", "where",
    "rerank"}."""
    if content_kind(request) == "json":
        body = parse_model(ImageQuery, await request.body())
        where = check_metadata_filter(body.where)
        image = await load_base64_image(body.image_base64, settings)
        return SearchIn(image.image, check_k(body.k, settings), body.labels, body.rerank, where)
    form = await read_form(request)
    data = await upload_bytes(form)
    assert data is not None
    params = request.query_params

    def field(name: str) -> str | None:
        value = form_text(form, name)
        return value if value is not None else params.get(name)

    k = check_k(form_int(field("k"), "k", 10), settings)
    labels = form_json(field("labels"), "labels", dict)
    where = check_metadata_filter(form_object(field("where"), "where"))
    rerank = form_bool(field("rerank"), "rerank")
    image = await load_image(data, settings)
    return SearchIn(image.image, k, labels, rerank, where)


async def item_in(body: ItemBody, settings: Settings) -> ItemIn:
    """One item of a JSON body."""
    if body.text is None and body.image_base64 is None:
        raise Problem(422, "an item needs a text, an image, or both")
    pair = body.text is not None and body.image_base64 is not None
    key, metadata = check_key_and_metadata(body.key, body.metadata, pair)
    image = None if body.image_base64 is None else await load_base64_image(body.image_base64,
                                                                            settings)
    return ItemIn(None if body.text is None else text_query(body.text, settings), image,
                  check_labels(body.labels), key, metadata)


async def item_from_request(request: Request, settings: Settings) -> ItemIn:
    """POST /v1/items: JSON {"text", "image_base64", "labels", "key", "metadata"} or a
    multipart form (fields `file`, `text`, `key`, `labels` as a JSON list, `metadata` as a JSON
    object)."""
    if content_kind(request) == "json":
        return await item_in(parse_model(ItemBody, await request.body()), settings)
    form = await read_form(request)
    data = await upload_bytes(form, required=False)
    labels = form_json(form_text(form, "labels"), "labels", list) or []
    text = form_text(form, "text")
    if data is None and text is None:
        raise Problem(422, "an item needs a 'file', a 'text', or both")
    key, metadata = check_key_and_metadata(
        form_text(form, "key"), form_object(form_text(form, "metadata"), "metadata"),
        pair=data is not None and text is not None)
    image = None if data is None else await load_image(data, settings)
    return ItemIn(None if text is None else text_query(text, settings), image,
                  check_labels(labels), key, metadata)
