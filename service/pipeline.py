"""The two-stage batching of searches: an encoder stage and a search stage, each a
DynamicBatcher (service.batching) on threads of its own, so neither torch nor FAISS runs on the
event loop.

The encoder threads share one model (inference only reads it), each running its own batches;
`encoder()` is read once per batch, so every vector names the checkpoint of the encoder that
made it. The encoder thread hands the rows of each batch, grouped by their SearchParams,
straight to the search thread, so one encoder batch is one FAISS call and one pass through the
catalog lock; going back through the event loop between the two stages would split each batch
into several searches, as the requests woke one by one. A search by a stored item needs no
encoder: it runs on the search thread with the vector its generation stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from PIL import Image

from service.batching import DynamicBatcher, Overloaded
from service.settings import Settings
from service.vectors import ItemRef, SearchParams, StaleVector, Vector

if TYPE_CHECKING:
    from index.catalog import Catalog, Hit
    from models.inference import Encoder

OnBatch = Callable[[str, int, float], None]


@dataclass(frozen=True)
class _BySimilar:
    """The search stage's batch kind for searches by stored items (no encoder, no vectors)."""
    params: SearchParams


@dataclass(frozen=True)
class _SearchQuery:
    """An encoder payload whose vector goes straight on to the search stage."""
    query: str | Image.Image
    params: SearchParams


@dataclass(frozen=True)
class _Searched:
    """One query's share of a group search: row `index` of what `group` resolves to."""
    group: Future[list[list[Hit] | StaleVector]]
    index: int


class SearchPipeline:
    def __init__(self, encoder: Callable[[], Encoder], catalog: Catalog, settings: Settings,
                 on_batch: OnBatch | None = None) -> None:
        self._encoder = encoder
        self._catalog = catalog
        self._search_threads = settings.search_thread_count
        self._encoding: DynamicBatcher[Vector | _Searched] = DynamicBatcher(
            self._encode_batch, max_size=settings.batch_max_size,
            max_wait_s=settings.batch_wait_ms / 1000, queue_max=settings.queue_max,
            on_batch=on_batch, name="encoder", workers=settings.encoder_worker_count,
        )
        self._searching: DynamicBatcher[Any] = DynamicBatcher(
            self._search_batch, max_size=settings.batch_max_size, max_wait_s=0.0,
            queue_max=settings.queue_max, name="search", init=self._search_thread_init,
            rows=lambda job: len(job) if isinstance(job, list) else 1,  # a group of query rows
            on_batch=None if on_batch is None else
            (lambda _params, size, seconds: on_batch("search", size, seconds)),
        )

    async def encode(self, query: str | Image.Image) -> Vector:
        kind = "text" if isinstance(query, str) else "image"
        return cast(Vector, await self._encoding.submit(kind, query))

    async def search(self, query: str | Image.Image, params: SearchParams
                     ) -> list[Hit] | StaleVector:
        """Encode, then search with the batch-mates of equal params (StaleVector: the catalog
        serves another checkpoint than the encoder that made the vector)."""
        kind = "text" if isinstance(query, str) else "image"
        share = cast(_Searched, await self._encoding.submit(kind, _SearchQuery(query, params)))
        # shield: a caller that times out must not cancel its batch-mates' group search
        found: list[list[Hit] | StaleVector] = await asyncio.shield(asyncio.wrap_future(
            share.group))
        return found[share.index]

    async def similar(self, ref: ItemRef, params: SearchParams) -> list[Hit] | None:
        found: list[Hit] | None = await self._searching.submit(_BySimilar(params), ref)
        return found

    async def on_encoder_thread(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on an encoder worker, outside any batch (re-ranking, swapping encoders)."""
        return await self._encoding.call(fn)

    def alive(self) -> bool:
        return self._encoding.alive() and self._searching.alive()

    def depth(self) -> int:
        """Queries waiting for the encoder."""
        return self._encoding.depth()

    def close(self) -> None:
        self._encoding.close()
        self._searching.close()

    # -- the encoder stage (worker threads) -----------------------------------------------------
    def _encode_batch(self, kind: str, payloads: list[Any]) -> list[Vector | _Searched]:
        """Encode; a search query's vector goes on to the search stage with the others of its
        params, and its caller gets its share of that group search instead of the vector."""
        encoder = self._encoder()  # read once: the vectors name the encoder that made them
        queries: list[Any] = [p.query if isinstance(p, _SearchQuery) else p for p in payloads]
        rows = encoder.encode_texts(queries) if kind == "text" else \
            encoder.encode_images(queries)
        out: list[Vector | _Searched] = [
            Vector(row, encoder.checkpoint_id, query if kind == "text" else None)
            for row, query in zip(rows, queries, strict=True)]
        groups: dict[SearchParams, list[int]] = {}
        for i, payload in enumerate(payloads):
            if isinstance(payload, _SearchQuery):
                groups.setdefault(payload.params, []).append(i)
        for params, members in groups.items():
            group: Future[list[list[Hit] | StaleVector]]
            try:
                group = self._searching.submit_nowait(params, [out[i] for i in members])
            except Overloaded as err:
                group = Future()
                group.set_exception(err)
            for index, i in enumerate(members):
                out[i] = _Searched(group, index)
        return out

    # -- the search stage (its thread) ----------------------------------------------------------
    def _search_thread_init(self) -> None:
        from index.store import set_search_threads

        set_search_threads(self._search_threads)

    def _search_batch(self, params: SearchParams | _BySimilar, groups: list[Any]) -> list[Any]:
        """Groups of searches sharing their params in one catalog call: usually one group, an
        encoder batch; more when batches queued meanwhile. Searches by stored items run one
        catalog call each (the catalog reads the vector)."""
        self._catalog.follow()  # an index rebuilt by another process, or by a job another
        # worker process of this service ran
        if isinstance(params, _BySimilar):
            return [self._similar(params.params, ref) for ref in groups]
        vectors = [v for group in groups for v in group]
        found = iter(self._search_rows(params, vectors))
        return [[next(found) for _ in group] for group in groups]

    def _search_rows(self, params: SearchParams, vectors: list[Vector]
                     ) -> list[list[Hit] | StaleVector]:
        live = self._catalog.checkpoint_id
        current = [vector for vector in vectors if vector.checkpoint_id == live]
        fusion = self._catalog.fusion.with_weights(dict(params.weights)) if params.weights \
            else None
        found = iter(self._catalog.search(
            np.stack([v.row for v in current]), params.k, params.modality, **params.filters(),
            texts=[v.text or "" for v in current], mode=params.mode,  # type: ignore[arg-type]
            fusion=fusion) if current else [])
        out: list[list[Hit] | StaleVector] = []
        for vector in vectors:
            hits = next(found) if vector.checkpoint_id == live else None
            # None: encoded by another encoder; a foreign record: the catalog reloaded between
            # the check and the search. Either way the caller encodes again.
            stale = hits is None or any(h.record.checkpoint_id != vector.checkpoint_id
                                        for h in hits)
            out.append(StaleVector() if stale or hits is None else hits)
        return out

    def _similar(self, params: SearchParams, ref: ItemRef) -> list[Hit] | None:
        return self._catalog.similar(params.k, params.modality, item_id=ref.item_id,
                                     key=ref.item_key, mode=params.mode,  # type: ignore[arg-type]
                                     **params.filters())
