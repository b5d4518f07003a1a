"""Turning parsed requests into validated queries and items: k, label and metadata filters, keys
and metadata, texts, images from an upload or base64 JSON. FastAPI parses the bodies (the JSON
models of service.schemas, the forms of service.forms); each rule the models cannot state is
checked here, once, for JSON and forms alike, and every refusal is a 4xx problem."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import UploadFile
from PIL import Image

from index.payload import MAX_KEY, TEXT_KEY, check_key, check_where, dump_metadata, text_key
from service.forms import ImageSearchForm, ImageSearchParams, ItemForm
from service.items import ImageInput, ItemToAdd
from service.labels import check_labels
from service.limits import check_text, decode_base64, decode_image
from service.problems import Problem
from service.schemas import ImageQuery, ItemIn, Modality, SearchMode, SimilarQuery, TextQuery
from service.settings import Settings

T = TypeVar("T")
IMAGE_PART_TYPES = ("image/", "application/octet-stream")
DEFAULT_K = 10
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def check_k(k: int | None, settings: Settings) -> int:
    """`k` within the served limit; None: the default, never above the limit."""
    if k is None:
        return min(DEFAULT_K, settings.max_k)
    if not 1 <= k <= settings.max_k:
        raise Problem(422, f"k must be between 1 and {settings.max_k}, got {k}")
    return k


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


async def upload_bytes(upload: UploadFile) -> bytes:
    """The bytes of an uploaded image part: a 415 problem for a part that says it is not
    an image."""
    kind = (upload.content_type or "application/octet-stream").lower()
    if not kind.startswith(IMAGE_PART_TYPES):
        raise Problem(415, f"the uploaded file is {kind!r}; expected an image/* type")
    return await upload.read()


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
    """A search as the edge validated it. `mode` None: the index's default for text (image
    queries rank by vector); `weights`: the hybrid weights the request sets."""
    query: str | Image.Image
    k: int
    labels: dict[str, str] | None
    rerank: bool
    where: tuple[tuple[str, str], ...] = ()  # check_metadata_filter's pairs
    mode: SearchMode | None = None
    weights: tuple[tuple[str, float], ...] = ()
    explain: bool = False


def text_search(query: TextQuery, settings: Settings) -> SearchIn:
    """A search text is never stored: control characters (NUL included) are read as spaces,
    where an item's text with a NUL is refused."""
    text = CONTROL.sub(" ", query.text)
    return SearchIn(text_query(text, settings), check_k(query.k, settings), query.labels,
                    query.rerank, check_metadata_filter(query.where), query.mode,
                    tuple(sorted((query.weights or {}).items())), query.explain)


async def image_search(body: ImageQuery, settings: Settings) -> SearchIn:
    """A JSON image search ({"image_base64", "k", "labels", "where", "rerank"})."""
    where = check_metadata_filter(body.where)
    k = check_k(body.k, settings)
    image = await load_base64_image(body.image_base64, settings)
    return SearchIn(image.image, k, body.labels, body.rerank, where)


def _first(*values: T | None, default: T) -> T:
    return next((value for value in values if value is not None), default)


async def upload_search(form: ImageSearchForm, params: ImageSearchParams, settings: Settings
                        ) -> SearchIn:
    """An upload search: each of k, labels, where, rerank from the form, else the query."""
    k = check_k(_first(form.k, params.k, default=None), settings)
    labels = _first(form.labels, params.labels, default=None)
    where = check_metadata_filter(_first(form.where, params.where, default=None))
    rerank = _first(form.rerank, params.rerank, default=False)
    image = await load_image(await upload_bytes(form.file), settings)
    return SearchIn(image.image, k, labels, rerank, where)


@dataclass(frozen=True)
class SimilarIn:
    """A search by a stored item (exactly one of item_id and item_key) as the edge validated
    it."""
    item_id: int | None
    item_key: str | None
    k: int
    modality: Modality
    labels: dict[str, str] | None
    where: tuple[tuple[str, str], ...]
    mode: SearchMode = "vector"


def similar_search(query: SimilarQuery, settings: Settings) -> SimilarIn:
    if (query.id is None) == (query.key is None):
        raise Problem(422, "name the item by exactly one of 'id' and 'key'")
    key, _ = check_key_and_metadata(query.key, None)
    return SimilarIn(query.id, key, check_k(query.k, settings), query.modality, query.labels,
                     check_metadata_filter(query.where), query.mode)


def _item(text: str | None, image: ImageInput | None, labels: Sequence[str], new_labels: bool,
          key: str | None, metadata: dict[str, Any], settings: Settings) -> ItemToAdd:
    return ItemToAdd(None if text is None else text_query(text, settings), image,
                     check_labels(labels), key, metadata, new_labels)


async def item_in(body: ItemIn, settings: Settings) -> ItemToAdd:
    """One item of a JSON body."""
    if body.text is None and body.image_base64 is None:
        raise Problem(422, "an item needs a text, an image, or both")
    pair = body.text is not None and body.image_base64 is not None
    key, metadata = check_key_and_metadata(body.key, body.metadata, pair)
    image = None if body.image_base64 is None else await load_base64_image(body.image_base64,
                                                                            settings)
    return _item(body.text, image, body.labels, body.new_labels, key, metadata, settings)


async def item_form(form: ItemForm, settings: Settings) -> ItemToAdd:
    """An item from a multipart form (fields `file`, `text`, `labels`, `key`, `metadata`)."""
    if form.file is None and form.text is None:
        raise Problem(422, "an item needs a 'file', a 'text', or both")
    pair = form.file is not None and form.text is not None
    key, metadata = check_key_and_metadata(form.key, form.metadata, pair)
    image = None if form.file is None else await load_image(await upload_bytes(form.file),
                                                            settings)
    labels = [] if form.labels is None else form.labels.root
    return _item(form.text, image, labels, form.new_labels, key, metadata, settings)
