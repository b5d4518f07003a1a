"""Items: ingest (single, pair, batch), fetch, fetch the image bytes, delete."""

from __future__ import annotations

import asyncio
import mimetypes
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from PIL import Image

from service.batching import Overloaded
from service.deps import EngineDep, JsonBody, SettingsDep, Writer
from service.engine import Engine
from service.media import MediaStore
from service.problems import Problem, responses
from service.queries import (
    ImageInput,
    check_labels,
    content_kind,
    form_json,
    form_text,
    load_base64_image,
    load_image,
    parse_model,
    read_form,
    text_query,
    upload_bytes,
)
from service.routes.search import item_url
from service.schemas import BatchIn, Ingested, IngestResponse, ItemIn, ItemOut
from service.settings import Settings

if TYPE_CHECKING:
    from index.catalog import NewItem

router = APIRouter(prefix="/v1/items", tags=["items"])
ItemId = Annotated[int, Path(ge=0, le=2**63 - 1, description="item id")]
WRITE_ERRORS = responses(401, 403, 413, 415, 422, 503)


@dataclass
class Prepared:
    new: NewItem
    query: str | Image.Image
    data: bytes | None = None
    path: FilePath | None = None


def _prepare(text: str | None, image: ImageInput | None, labels: list[str],
             settings: Settings, media: MediaStore) -> list[Prepared]:
    from index.catalog import NewItem
    from index.records import bytes_hash, text_hash

    if text is None and image is None:
        raise Problem(422, "an item needs a text, an image, or both")
    label_tuple = check_labels(labels)
    prepared = []
    if image is not None:
        digest = bytes_hash(image.data)
        path = media.path(digest, image.data)
        prepared.append(Prepared(NewItem("image", digest, label_tuple, source=str(path)),
                                 image.image, image.data, path))
    if text is not None:
        text = text_query(text, settings)
        prepared.append(Prepared(NewItem("text", text_hash(text), label_tuple, text=text), text))
    return prepared


async def _ingest(engine: Engine, media: MediaStore, prepared: list[Prepared]
                  ) -> list[Ingested]:
    hashes = [p.new.content_hash for p in prepared if p.data is not None]
    async with AsyncExitStack() as stack:
        for lock in media.locks(hashes):
            await stack.enter_async_context(lock)
        written = [p.path for p in prepared if p.path is not None and p.data is not None
                   and await asyncio.to_thread(media.write, p.path, p.data)]
        try:
            results = await engine.ingest([p.new for p in prepared],
                                          [p.query for p in prepared])
        except BaseException:
            for path in written:
                media.remove(path)
            raise
        for p, (item_id, created) in zip(prepared, results, strict=True):
            if p.path in written and not created:  # the same bytes were already stored
                record = await engine.get(item_id)
                if record is None or record.source != str(p.path):
                    media.remove(p.path)
    return [Ingested(id=item_id, modality=p.new.modality, created=created,  # type: ignore[arg-type]
                     url=item_url(item_id, p.new.modality))
            for p, (item_id, created) in zip(prepared, results, strict=True)]


async def _answer(engine: Engine, request: Request, prepared: list[Prepared],
                  response: Response) -> IngestResponse:
    try:
        items = await _ingest(engine, request.app.state.media, prepared)
    except Overloaded as err:
        raise Problem(503, f"overloaded: {err}", headers={"Retry-After": "1"}) from err
    response.status_code = 201 if any(item.created for item in items) else 200
    return IngestResponse(items=items)


_ITEM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "text": {"type": "string"},
                    "labels": {"type": "string", "description": 'JSON ["coarse", "fine"]'},
                }}},
            "application/json": {"schema": ItemIn.model_json_schema()},
        },
    }
}


@router.post("", response_model=IngestResponse, status_code=201, dependencies=[Writer],
             responses={200: {"description": "already stored (duplicates)"}, **WRITE_ERRORS},
             openapi_extra=_ITEM_BODY, summary="Add an image, a text, or an image-text pair")
async def add_item(request: Request, response: Response, engine: EngineDep,
                   settings: SettingsDep) -> IngestResponse:
    media: MediaStore = request.app.state.media
    if content_kind(request) == "json":
        body = parse_model(ItemIn, await request.body())
        image = None if body.image_base64 is None else \
            await load_base64_image(body.image_base64, settings)
        prepared = _prepare(body.text, image, body.labels, settings, media)
    else:
        form = await read_form(request)
        data = await upload_bytes(form, required=False)
        labels = form_json(form_text(form, "labels"), "labels", list) or []
        text = form_text(form, "text")
        if data is None and text is None:
            raise Problem(422, "an item needs a 'file', a 'text', or both")
        image = None if data is None else await load_image(data, settings)
        prepared = _prepare(text, image, labels, settings, media)
    return await _answer(engine, request, prepared, response)


@router.post("/batch", response_model=IngestResponse, status_code=201,
             dependencies=[Writer, JsonBody],
             responses={200: {"description": "all already stored"}, **WRITE_ERRORS},
             summary="Add several items at once (one encoder batch, one durable write)")
async def add_batch(batch: BatchIn, request: Request, response: Response, engine: EngineDep,
                    settings: SettingsDep) -> IngestResponse:
    if not batch.items:
        raise Problem(422, "items is empty")
    if len(batch.items) > settings.max_batch_items:
        raise Problem(413, f"{len(batch.items)} items; at most {settings.max_batch_items} per "
                           "batch")
    media: MediaStore = request.app.state.media
    prepared: list[Prepared] = []
    for item in batch.items:
        image = None if item.image_base64 is None else \
            await load_base64_image(item.image_base64, settings)
        prepared += _prepare(item.text, image, item.labels, settings, media)
    return await _answer(engine, request, prepared, response)


@router.get("/{item_id}", response_model=ItemOut, responses=responses(404, 422))
async def get_item(item_id: ItemId, engine: EngineDep) -> ItemOut:
    record = await engine.get(item_id)
    if record is None:
        raise Problem(404, f"no item {item_id}")
    return ItemOut(id=record.id, modality=record.modality,  # type: ignore[arg-type]
                   labels=list(record.labels), text=record.text,
                   url=item_url(record.id, record.modality), content_hash=record.content_hash,
                   checkpoint_id=record.checkpoint_id)


@router.get("/{item_id}/image", response_class=FileResponse, responses={
    200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "the image bytes"},
    307: {"description": "the image lives at a remote URI"}, **responses(404, 422)})
async def get_image(item_id: ItemId, engine: EngineDep) -> Response:
    record = await engine.get(item_id)
    if record is None:
        raise Problem(404, f"no item {item_id}")
    if record.modality != "image" or not record.source:
        raise Problem(404, f"item {item_id} is a {record.modality}, it has no image")
    if record.source.startswith(("http://", "https://")):
        return RedirectResponse(record.source, status_code=307)
    path = FilePath(record.source.removeprefix("file://"))
    if not await asyncio.to_thread(path.is_file):
        raise Problem(404, f"the image file of item {item_id} is gone")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=kind, headers={"Cache-Control": "max-age=3600"})


@router.delete("/{item_id}", status_code=204, dependencies=[Writer],
               responses=responses(401, 403, 404, 422))
async def delete_item(item_id: ItemId, request: Request, engine: EngineDep) -> Response:
    media: MediaStore = request.app.state.media
    record = await engine.get(item_id)
    if record is None:
        raise Problem(404, f"no item {item_id}")
    async with media.lock(record.content_hash):
        deleted = await engine.delete(item_id)
        if deleted and record.modality == "image" and media.owns(record.source):
            await asyncio.to_thread(media.remove, FilePath(record.source or ""))
    if not deleted:
        raise Problem(404, f"no item {item_id}")
    return Response(status_code=204)
