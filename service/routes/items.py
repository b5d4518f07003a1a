"""Items: ingest (single, pair, batch; upsert by key), fetch, fetch the image bytes, delete; by
id or by key. Thin: inputs are checked by service.queries, the work is service.items' use
cases."""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Form, Path, Response
from fastapi.responses import FileResponse, RedirectResponse

from service.deps import ItemsDep, RetrieverDep, SettingsDep, Utf8Fields, Writer
from service.forms import ItemForm
from service.items import Stored
from service.negotiation import ByMediaType
from service.problems import Problem, responses
from service.queries import check_key_and_metadata, item_form, item_in
from service.schemas import BatchIn, Ingested, IngestResponse, ItemIn, ItemOut, item_url

if TYPE_CHECKING:
    from index.records import Record

router = APIRouter(prefix="/v1/items", tags=["items"], route_class=ByMediaType)
ItemId = Annotated[int, Path(ge=0, le=2**63 - 1, description="item id")]
ItemKey = Annotated[str, Path(description="the item's key, URL-encoded (it may contain '/')")]
WRITE_ERRORS = responses(401, 403, 409, 413, 415, 422, 503)


def _answer(stored: list[Stored], response: Response) -> IngestResponse:
    response.status_code = 201 if any(item.created for item in stored) else 200
    return IngestResponse(items=[
        Ingested(id=item.id, modality=item.modality, created=item.created,
                 status=201 if item.created else 200, key=item.key,
                 url=item_url(item.id, item.modality)) for item in stored])


def _item_out(record: Record) -> ItemOut:
    return ItemOut(id=record.id, modality=record.modality,  # type: ignore[arg-type]
                   labels=list(record.labels), text=record.text,
                   url=item_url(record.id, record.modality), content_hash=record.content_hash,
                   checkpoint_id=record.checkpoint_id, key=record.key, metadata=record.metadata)


def _checked_key(key: str) -> str:
    checked, _ = check_key_and_metadata(key, None)
    assert checked is not None
    return checked


ADDED = {200: {"description": "its key existed (the item was replaced, same id) or, without a "
                             "key, already stored"}, **WRITE_ERRORS}


# JSON or a multipart form: one route for each (service.negotiation), one OpenAPI operation.
@router.post("", response_model=IngestResponse, status_code=201, dependencies=[Writer],
             responses=ADDED)
async def add_item_json(body: ItemIn, response: Response, items: ItemsDep,
                        settings: SettingsDep) -> IngestResponse:
    return _answer(await items.add([await item_in(body, settings)]), response)


@router.post("", response_model=IngestResponse, status_code=201,
             dependencies=[Writer, Utf8Fields], responses=ADDED,
             summary="Add an image, a text, or an image-text pair; replace the item of a key")
async def add_item(form: Annotated[ItemForm, Form(media_type="multipart/form-data")],
                   response: Response, items: ItemsDep, settings: SettingsDep
                   ) -> IngestResponse:
    return _answer(await items.add([await item_form(form, settings)]), response)


@router.post("/batch", response_model=IngestResponse, status_code=201,
             dependencies=[Writer],
             responses={200: {"description": "none created (all replaced or already stored)"},
                        **WRITE_ERRORS},
             summary="Add several items at once (one encoder batch, one durable write)",
             description="201 when any item was created; each entry of `items` has its own "
                         "`status` (201 created, 200 replaced by key or already stored). Items "
                         "are stored in order: when two carry one key, the later one wins.")
async def add_batch(batch: BatchIn, response: Response, items: ItemsDep,
                    settings: SettingsDep) -> IngestResponse:
    if not batch.items:
        raise Problem(422, "items is empty")
    if len(batch.items) > settings.max_batch_items:
        raise Problem(413, f"{len(batch.items)} items; at most {settings.max_batch_items} per "
                           "batch")
    checked = [await item_in(item, settings) for item in batch.items]
    return _answer(await items.add(checked), response)


# The by-key routes come first: `/{item_id}/image` would take /by-key/image otherwise.
@router.get("/by-key/{key:path}", response_model=ItemOut, responses=responses(404, 422))
async def get_item_by_key(key: ItemKey, retriever: RetrieverDep) -> ItemOut:
    record = await retriever.get_by_key(_checked_key(key))
    if record is None:
        raise Problem(404, f"no item has the key {key!r}")
    return _item_out(record)


@router.delete("/by-key/{key:path}", status_code=204, dependencies=[Writer],
               responses=responses(401, 403, 404, 422))
async def delete_item_by_key(key: ItemKey, items: ItemsDep) -> Response:
    if await items.delete_by_key(_checked_key(key)) is None:
        raise Problem(404, f"no item has the key {key!r}")
    return Response(status_code=204)


@router.get("/{item_id}", response_model=ItemOut, responses=responses(404, 422))
async def get_item(item_id: ItemId, retriever: RetrieverDep) -> ItemOut:
    record = await retriever.get(item_id)
    if record is None:
        raise Problem(404, f"no item {item_id}")
    return _item_out(record)


@router.get("/{item_id}/image", response_class=FileResponse, responses={
    200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "the image bytes"},
    307: {"description": "the image lives at a remote URI"}, **responses(404, 422)})
async def get_image(item_id: ItemId, retriever: RetrieverDep) -> Response:
    record = await retriever.get(item_id)
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
async def delete_item(item_id: ItemId, items: ItemsDep) -> Response:
    if not await items.delete(item_id):
        raise Problem(404, f"no item {item_id}")
    return Response(status_code=204)
