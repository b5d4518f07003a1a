"""Liveness, readiness and what is being served."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from service.deps import RetrieverDep, SettingsDep
from service.metrics import EXPOSED, Metrics
from service.problems import Problem, responses

router = APIRouter(tags=["health"])


class Status(BaseModel):
    status: str


class IndexSearch(BaseModel):
    """How one modality's index searches: the parameter `xmr index build` tuned on queries of
    the other modality, and the recall@10 it measured with it (null: an exact index)."""

    index: str
    param: str | None = None
    value: int | None = None
    recall_at_10: float | None = None
    target: float | None = None
    queries: int = 0
    query_modality: str | None = None
    note: str = ""


class Info(BaseModel):
    checkpoint_id: str
    method: str
    dim: int
    can_rerank: bool
    items: dict[str, int]
    levels: list[str]
    label_values: dict[str, list[str]]
    writable: bool
    api_key_required: bool
    max_k: int
    max_body_bytes: int
    index_search: dict[str, IndexSearch] = {}
    search_modes: dict[str, str] = Field(
        default_factory=dict, description="each text search's default mode (text-to-image: "
                                          "modality image)")
    fusion: dict[str, Any] = Field(
        default_factory=dict, description="how hybrid search combines its signals: method "
                                          "(zscore or rrf) and weights")
    text_fields: list[str] = Field(
        default_factory=list, description="metadata fields whose words hybrid search matches "
                                          "beside each item's caption or text, and its labels")


@router.get("/healthz", response_model=Status)
async def healthz() -> Status:
    """Alive: the process answers (says nothing about the model)."""
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses=responses(503))
async def readyz(request: Request) -> Status:
    """Ready: the encoder and the index are loaded and the encoder thread runs."""
    retriever = getattr(request.app.state, "retriever", None)
    if retriever is None or not retriever.alive():
        raise Problem(503, "the encoder and index are not loaded", headers={"Retry-After": "5"})
    return Status(status="ready")


@router.get(EXPOSED, response_class=Response, responses={
    200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
async def metrics(request: Request) -> Response:
    """Per-route latency and counts, encoder and search batch sizes, queue depth, index size."""
    exposed: Metrics = request.app.state.metrics
    # In a thread: the index-size gauges wait for the catalog lock, which a search may hold.
    text = await asyncio.to_thread(exposed.exposition)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/info", response_model=Info, tags=["search"], responses=responses(409, 503))
async def info(retriever: RetrieverDep, settings: SettingsDep) -> Info:
    """What is served: checkpoint, label levels and values (for filters), counts, limits,
    each index's tuned search parameter with its measured recall, and how text is ranked."""
    await retriever.follow()
    known = await retriever.label_values()
    counts = {m: await retriever.count(m) for m in ("image", "text")}
    return Info(
        checkpoint_id=retriever.checkpoint_id, method=retriever.method_name, dim=retriever.dim,
        can_rerank=retriever.can_rerank, items=counts, levels=list(known),
        label_values={level: sorted(values) for level, values in known.items()},
        writable=settings.writable, api_key_required=settings.api_key is not None,
        max_k=settings.max_k, max_body_bytes=settings.max_body_bytes,
        index_search={m: IndexSearch(**t) for m, t in retriever.search_tuning.items()},
        search_modes={m: await retriever.default_mode(m) for m in ("image", "text")},
        fusion=retriever.fusion.as_dict(), text_fields=list(retriever.text_fields),
    )
