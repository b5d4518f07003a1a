"""Search: text or image in, images or texts out (cross-modal and same-modality). Inputs are
checked once by service.queries; errors become problems in service.problems' handlers."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from PIL import Image

from models.inference import ImageError, open_image
from service.deps import JsonBody, RetrieverDep, SettingsDep
from service.problems import Problem, responses
from service.queries import SearchIn, check_filter, image_search, text_search
from service.retriever import Retriever, SearchKey
from service.schemas import (
    ImageQuery,
    Modality,
    SearchHit,
    SearchResponse,
    TextQuery,
    item_url,
)
from service.settings import Settings

if TYPE_CHECKING:
    from index.catalog import Hit

router = APIRouter(prefix="/v1/search", tags=["search"])
ERRORS = responses(400, 409, 413, 415, 422, 503)


def _hit(hit: Hit, score: float | None = None) -> SearchHit:
    record = hit.record
    return SearchHit(
        id=hit.id, score=hit.score if score is None else score,
        modality=record.modality,  # type: ignore[arg-type]
        labels=list(record.labels), url=item_url(hit.id, record.modality), text=record.text,
        similarity=None if score is None else hit.score,
    )


async def search(retriever: Retriever, settings: Settings, asked: SearchIn,
                 modality: Modality) -> SearchResponse:
    """Bounded by the request timeout as a whole (TimeoutError: a 503 problem)."""
    started = time.perf_counter()
    labels = check_filter(asked.labels, retriever.catalog.levels)
    if asked.rerank and not retriever.can_rerank:
        encoder = retriever.encoder
        raise Problem(400, f"checkpoint {encoder.checkpoint_id} ({encoder.method_name}) has no "
                           "cross-attention scorer; re-ranking needs an aaml checkpoint")
    if asked.rerank and isinstance(asked.query, str) == (modality == "text"):
        raise Problem(400, "re-ranking scores text-image pairs: it applies to text-to-image and "
                           "image-to-text search only")
    wanted = max(asked.k, settings.rerank_max) if asked.rerank else asked.k
    key = SearchKey(modality, wanted, tuple(sorted((labels or {}).items())))
    async with asyncio.timeout(settings.request_timeout_s):
        hits = await retriever.search(asked.query, key)
        results = (await _rerank(retriever, asked.query, hits, asked.k) if asked.rerank
                   else [_hit(h) for h in hits])
    return SearchResponse(
        results=results, k=asked.k, modality=modality, reranked=asked.rerank,
        took_ms=round((time.perf_counter() - started) * 1000, 3),
        checkpoint_id=retriever.encoder.checkpoint_id,
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


async def _rerank(retriever: Retriever, query: str | Image.Image, hits: list[Hit],
                  k: int) -> list[SearchHit]:
    """Cross-attention scores for the candidates, best first; candidates the scorer cannot
    see (an image file gone) keep their cosine order after the scored ones."""
    if isinstance(query, str):
        usable, images, missing = await asyncio.to_thread(_open_candidates, hits)
        scores = (await retriever.rerank_images(query, images)).tolist() if usable else []
    else:
        usable = [hit for hit in hits if hit.record.text is not None]
        missing = [hit for hit in hits if hit.record.text is None]
        texts = [hit.record.text or "" for hit in usable]
        scores = (await retriever.rerank_texts(query, texts)).tolist() if usable else []
    ranked = sorted(zip(usable, (float(s) for s in scores), strict=True),
                    key=lambda pair: -pair[1])
    out = [_hit(hit, score) for hit, score in ranked] + [_hit(hit) for hit in missing]
    return out[:k]


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
async def text_to_image(query: TextQuery, retriever: RetrieverDep, settings: SettingsDep
                        ) -> SearchResponse:
    asked = text_search(query.text, query.k, query.labels, query.rerank, settings)
    return await search(retriever, settings, asked, "image")


@router.post("/text-to-text", response_model=SearchResponse, responses=ERRORS,
             dependencies=[JsonBody], summary="Texts for a text")
async def text_to_text(query: TextQuery, retriever: RetrieverDep, settings: SettingsDep
                       ) -> SearchResponse:
    asked = text_search(query.text, query.k, query.labels, query.rerank, settings)
    return await search(retriever, settings, asked, "text")


@router.post("/image-to-text", response_model=SearchResponse, responses=ERRORS,
             openapi_extra=_IMAGE_BODY, summary="Texts for an image")
async def image_to_text(request: Request, retriever: RetrieverDep, settings: SettingsDep
                        ) -> SearchResponse:
    return await search(retriever, settings, await image_search(request, settings), "text")


@router.post("/image-to-image", response_model=SearchResponse, responses=ERRORS,
             openapi_extra=_IMAGE_BODY, summary="Images for an image")
async def image_to_image(request: Request, retriever: RetrieverDep, settings: SettingsDep
                         ) -> SearchResponse:
    return await search(retriever, settings, await image_search(request, settings), "image")
