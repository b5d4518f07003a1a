"""The search use cases: a validated query in, hits out (best first), optionally re-ranked by
the checkpoint's cross-attention scorer; or a stored item's vector in (search by item). Each is
bounded as a whole by the request timeout."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from PIL import Image

from models.inference import ImageError, open_image
from service.labels import check_filter, with_vocabulary
from service.problems import Problem
from service.queries import SearchIn, SimilarIn
from service.retriever import Retriever
from service.schemas import Modality, SearchHit, SearchMode, SearchResponse, item_url
from service.settings import Settings
from service.vectors import ItemRef, SearchParams

if TYPE_CHECKING:
    from index.catalog import Hit


def _hit(hit: Hit, score: float | None = None, explain: bool = False) -> SearchHit:
    record = hit.record
    return SearchHit(
        id=hit.id, score=hit.score if score is None else score,
        modality=record.modality,  # type: ignore[arg-type]
        labels=list(record.labels), url=item_url(hit.id, record.modality), text=record.text,
        key=record.key, metadata=record.metadata,
        similarity=None if score is None else hit.score,
        signals=(hit.signals or {"vector": hit.score}) if explain else None,
    )


async def search(retriever: Retriever, settings: Settings, asked: SearchIn,
                 modality: Modality) -> SearchResponse:
    """Bounded by the request timeout as a whole (TimeoutError: a 503 problem)."""
    started = time.perf_counter()
    labels = await checked_filter(retriever, asked.labels)
    if asked.rerank and not retriever.can_rerank:
        raise Problem(400, f"checkpoint {retriever.checkpoint_id} ({retriever.method_name}) has no "
                           "cross-attention scorer; re-ranking needs an aaml checkpoint")
    if asked.rerank and isinstance(asked.query, str) == (modality == "text"):
        raise Problem(400, "re-ranking scores text-image pairs: it applies to text-to-image and "
                           "image-to-text search only")
    wanted = max(asked.k, settings.rerank_max) if asked.rerank else asked.k
    mode = await _mode(retriever, asked, modality)
    params = SearchParams(modality, wanted, tuple(sorted((labels or {}).items())), asked.where,
                          mode or "vector", asked.weights)
    async with asyncio.timeout(settings.request_timeout_s):
        hits = await retriever.search(asked.query, params)
        results = (await _rerank(retriever, asked.query, hits, asked.k) if asked.rerank
                   else [_hit(h, explain=asked.explain) for h in hits])
    return SearchResponse(
        results=results, k=asked.k, modality=modality, reranked=asked.rerank, mode=mode,
        took_ms=round((time.perf_counter() - started) * 1000, 3),
        checkpoint_id=retriever.checkpoint_id,
    )


async def _mode(retriever: Retriever, asked: SearchIn, modality: Modality) -> SearchMode | None:
    """How a text query ranks (None for an image query: by vector); its hybrid weights are
    checked against the index's here, so a bad combination is a 422, not a failed search."""
    if not isinstance(asked.query, str):
        return None
    if asked.weights:
        try:
            retriever.fusion.with_weights(dict(asked.weights))
        except ValueError as err:
            raise Problem(422, f"weights: {err}") from err
    return asked.mode or await retriever.default_mode(modality)


async def similar(retriever: Retriever, settings: Settings, asked: SimilarIn
                  ) -> SearchResponse:
    """Search by a stored item: a 404 problem when there is no such item."""
    started = time.perf_counter()
    labels = await checked_filter(retriever, asked.labels)
    params = SearchParams(asked.modality, asked.k, tuple(sorted((labels or {}).items())),
                          asked.where, asked.mode)
    async with asyncio.timeout(settings.request_timeout_s):
        hits = await retriever.similar(ItemRef(asked.item_id, asked.item_key), params)
    if hits is None:
        raise Problem(404, f"no item {asked.item_id}" if asked.item_key is None
                      else f"no item has the key {asked.item_key!r}")
    return SearchResponse(
        results=[_hit(h) for h in hits], k=asked.k, modality=asked.modality, reranked=False,
        mode=asked.mode,
        took_ms=round((time.perf_counter() - started) * 1000, 3),
        checkpoint_id=retriever.index_checkpoint_id,
    )


async def checked_filter(retriever: Retriever, labels: dict[str, str] | None
                         ) -> dict[str, str] | None:
    if not labels:
        return None
    return await with_vocabulary(retriever, lambda known: check_filter(labels, known))


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
