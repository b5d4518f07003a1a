"""Search: text or image in, images or texts out (cross-modal and same-modality)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from PIL import Image

from models.inference import ImageError, open_image
from service.batching import Overloaded
from service.deps import EngineDep, JsonBody, SettingsDep
from service.engine import Engine
from service.problems import Problem, responses
from service.queries import (
    check_filter,
    check_k,
    content_kind,
    form_bool,
    form_int,
    form_json,
    form_text,
    load_base64_image,
    load_image,
    parse_model,
    read_form,
    text_query,
    upload_bytes,
)
from service.schemas import ImageQuery, Modality, SearchHit, SearchResponse, TextQuery
from service.settings import Settings

if TYPE_CHECKING:
    from index.catalog import Hit

router = APIRouter(prefix="/v1/search", tags=["search"])
ERRORS = responses(400, 413, 415, 422, 503)


def item_url(item_id: int, modality: str) -> str:
    return f"/v1/items/{item_id}/image" if modality == "image" else f"/v1/items/{item_id}"


def _hit(hit: Hit, score: float | None = None) -> SearchHit:
    record = hit.record
    return SearchHit(
        id=hit.id, score=hit.score if score is None else score,
        modality=record.modality,  # type: ignore[arg-type]
        labels=list(record.labels), url=item_url(hit.id, record.modality), text=record.text,
        similarity=None if score is None else hit.score,
    )


async def search(engine: Engine, settings: Settings, query: str | Image.Image,
                 modality: Modality, k: int, labels: dict[str, str] | None,
                 rerank: bool) -> SearchResponse:
    started = time.perf_counter()
    check_k(k, settings)
    labels = check_filter(labels, engine.catalog.levels)
    if rerank and not engine.can_rerank:
        encoder = engine.encoder
        raise Problem(400, f"checkpoint {encoder.checkpoint_id} ({encoder.method_name}) has no "
                           "cross-attention scorer; re-ranking needs an aaml checkpoint")
    if rerank and isinstance(query, str) == (modality == "text"):
        raise Problem(400, "re-ranking scores text-image pairs: it applies to text-to-image and "
                           "image-to-text search only")
    wanted = max(k, settings.rerank_max) if rerank else k
    try:
        async with asyncio.timeout(settings.request_timeout_s):
            hits = await engine.search(query, wanted, modality, labels)
            results = await _rerank(engine, query, hits, k) if rerank else [_hit(h) for h in hits]
    except TimeoutError as err:
        raise Problem(503, f"search did not finish within {settings.request_timeout_s:g} s",
                      headers={"Retry-After": "1"}) from err
    except Overloaded as err:
        raise Problem(503, f"overloaded: {err}", headers={"Retry-After": "1"}) from err
    return SearchResponse(
        results=results, k=k, modality=modality, reranked=rerank,
        took_ms=round((time.perf_counter() - started) * 1000, 3),
        checkpoint_id=engine.encoder.checkpoint_id,
    )


def _open_candidates(hits: list[Hit]) -> tuple[list[Hit], list[Image.Image], list[Hit]]:
    usable, images, missing = [], [], []
    for hit in hits:
        try:
            images.append(open_image(hit.record.source or ""))
            usable.append(hit)
        except ImageError:
            missing.append(hit)
    return usable, images, missing


async def _rerank(engine: Engine, query: str | Image.Image, hits: list[Hit],
                  k: int) -> list[SearchHit]:
    """Cross-attention scores for the candidates, best first; candidates the scorer cannot
    see (an image file gone) keep their cosine order after the scored ones."""
    if isinstance(query, str):
        usable, images, missing = await asyncio.to_thread(_open_candidates, hits)
        scores = (await engine.rerank_images(query, images)).tolist() if usable else []
    else:
        usable = [hit for hit in hits if hit.record.text is not None]
        missing = [hit for hit in hits if hit.record.text is None]
        texts = [hit.record.text or "" for hit in usable]
        scores = (await engine.rerank_texts(query, texts)).tolist() if usable else []
    ranked = sorted(zip(usable, (float(s) for s in scores), strict=True),
                    key=lambda pair: -pair[1])
    out = [_hit(hit, score) for hit, score in ranked] + [_hit(hit) for hit in missing]
    return out[:k]


async def image_query(request: Request, settings: Settings
                      ) -> tuple[Image.Image, int, dict[str, str] | None, bool]:
    """A multipart upload (field `file`; k, labels, rerank as form fields or query parameters)
    or JSON {"image_base64", "k", "labels", "rerank"}."""
    if content_kind(request) == "json":
        body = parse_model(ImageQuery, await request.body())
        check_k(body.k, settings)
        image = await load_base64_image(body.image_base64, settings)
        return image.image, body.k, body.labels, body.rerank
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
    return image.image, k, labels, rerank


_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "k": {"type": "integer", "default": 10},
                    "labels": {"type": "string", "description": 'JSON {"level": "value"}'},
                    "rerank": {"type": "boolean", "default": False},
                }}},
            "application/json": {"schema": ImageQuery.model_json_schema()},
        },
    }
}


@router.post("/text-to-image", response_model=SearchResponse, responses=ERRORS,
             dependencies=[JsonBody], summary="Images for a text")
async def text_to_image(query: TextQuery, engine: EngineDep, settings: SettingsDep
                        ) -> SearchResponse:
    return await search(engine, settings, text_query(query.text, settings), "image", query.k,
                        query.labels, query.rerank)


@router.post("/text-to-text", response_model=SearchResponse, responses=ERRORS,
             dependencies=[JsonBody], summary="Texts for a text")
async def text_to_text(query: TextQuery, engine: EngineDep, settings: SettingsDep
                       ) -> SearchResponse:
    return await search(engine, settings, text_query(query.text, settings), "text", query.k,
                        query.labels, query.rerank)


@router.post("/image-to-text", response_model=SearchResponse, responses=ERRORS,
             openapi_extra=_IMAGE_BODY, summary="Texts for an image")
async def image_to_text(request: Request, engine: EngineDep, settings: SettingsDep
                        ) -> SearchResponse:
    image, k, labels, rerank = await image_query(request, settings)
    return await search(engine, settings, image, "text", k, labels, rerank)


@router.post("/image-to-image", response_model=SearchResponse, responses=ERRORS,
             openapi_extra=_IMAGE_BODY, summary="Images for an image")
async def image_to_image(request: Request, engine: EngineDep, settings: SettingsDep
                         ) -> SearchResponse:
    image, k, labels, rerank = await image_query(request, settings)
    return await search(engine, settings, image, "image", k, labels, rerank)
