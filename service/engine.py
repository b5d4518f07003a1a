"""The engine: one encoder behind the dynamic batcher, one catalog behind a thread pool.

Neither torch nor FAISS/SQLite runs on the event loop. The encoder's worker threads share one
model (inference only reads it), each running its own batches. Every vector carries the
checkpoint id of the encoder that made it, and is only ever compared with items of that same
checkpoint: when a re-index job swaps in a new checkpoint, the catalog (whose generation names
its checkpoint, as every hit's record does) and the encoder change one after the other, and a
query that straddles the change (or was encoded by a worker still busy with the old encoder)
is encoded again instead of being searched in the wrong space; an ingest gets the catalog's
StaleCheckpoint and does the same. No lock is held across requests and none is dropped: they
wait (bounded by the request timeout) for the pair to agree.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
from PIL import Image

from service.batching import DynamicBatcher, Overloaded, name_os_thread
from service.settings import Settings

if TYPE_CHECKING:
    from index.catalog import Catalog, Hit, NewItem, Record
    from models.inference import Encoder

log = logging.getLogger("service.engine")
R = TypeVar("R")


@dataclass(frozen=True)
class Vector:
    row: np.ndarray  # float32 (d,), unit norm
    checkpoint_id: str  # of the encoder that made it


class StaleVector(Exception):
    """The encoder changed between encoding and use; encode again."""


@dataclass(frozen=True)
class _SearchQuery:
    """An encoder payload whose vector goes straight on to the search stage."""
    query: str | Image.Image
    key: str  # json [modality, k, sorted label pairs]: the searches one FAISS call can share


@dataclass(frozen=True)
class _Searched:
    """One query's share of a group search: row `index` of what `group` resolves to."""
    group: Future[list[list[Hit] | StaleVector]]
    index: int


class Engine:
    def __init__(self, encoder: Encoder, catalog: Catalog, settings: Settings,
                 on_batch: Callable[[str, int, float], None] | None = None) -> None:
        self.encoder = encoder
        self.catalog = catalog
        self.settings = settings
        self.swaps = 0
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="catalog",
                                        initializer=name_os_thread, initargs=("catalog",))
        self.batcher: DynamicBatcher[Vector | _Searched] = DynamicBatcher(
            self._encode_batch, max_size=settings.batch_max_size,
            max_wait_s=settings.batch_wait_ms / 1000, queue_max=settings.queue_max,
            on_batch=on_batch, name="encoder", workers=settings.encoder_worker_count,
        )
        # Searches are batched too: the encoder thread hands the rows of each batch, grouped by
        # (modality, k, labels), straight to the search thread, so one encoder batch is one
        # FAISS call (a flat scan of 100k rows costs ~17 ms for 1 query and ~23 ms for 16) and
        # one pass through the catalog lock. Going back through the event loop between the two
        # stages split each batch into several searches, as the requests woke one by one.
        self.searcher: DynamicBatcher[list[list[Hit] | StaleVector]] = DynamicBatcher(
            self._search_batch, max_size=settings.batch_max_size, max_wait_s=0.0,
            queue_max=settings.queue_max, name="search", init=self._search_thread_init,
            rows=len,  # a job is a group of query rows
            on_batch=None if on_batch is None else
            (lambda _key, size, seconds: on_batch("search", size, seconds)),
        )

    @classmethod
    def load(cls, settings: Settings,
             on_batch: Callable[[str, int, float], None] | None = None) -> Engine:
        from index.catalog import Catalog
        from models.inference import Encoder

        # encoder_threads: each worker thread's OpenMP team
        encoder = Encoder.load(settings.checkpoint, settings.device, settings.encoder_threads)
        catalog = Catalog.open(Path(settings.index), checkpoint_id=encoder.checkpoint_id,
                               dim=encoder.dim, levels=encoder.levels,
                               gpu=settings.search_on_gpu, backend=settings.backend())
        log.info("loaded checkpoint %s (%s, dim %d) and index %s with %d items",
                 encoder.checkpoint_id, encoder.method_name, encoder.dim, settings.index,
                 catalog.count())
        return cls(encoder, catalog, settings, on_batch)

    def _search_thread_init(self) -> None:
        from index.store import set_search_threads

        set_search_threads(self.settings.search_thread_count)

    def close(self) -> None:
        self.batcher.close()
        self.searcher.close()
        self._pool.shutdown(wait=True)
        self.catalog.close()

    # -- encoder (worker thread) ---------------------------------------------------------------
    def _encode_batch(self, kind: str, payloads: list[Any]) -> list[Vector | _Searched]:
        """Encode; a search query's vector goes on to the search stage with the others of its
        key, and its caller gets its share of that group search instead of the vector."""
        encoder = self.encoder  # read once: the vectors name the encoder that made them
        queries: list[Any] = [p.query if isinstance(p, _SearchQuery) else p for p in payloads]
        rows = encoder.encode_texts(queries) if kind == "text" else \
            encoder.encode_images(queries)
        out: list[Vector | _Searched] = [Vector(row, encoder.checkpoint_id) for row in rows]
        groups: dict[str, list[int]] = {}
        for i, payload in enumerate(payloads):
            if isinstance(payload, _SearchQuery):
                groups.setdefault(payload.key, []).append(i)
        for key, members in groups.items():
            group: Future[list[list[Hit] | StaleVector]]
            try:
                group = self.searcher.submit_nowait(key, [out[i] for i in members])
            except Overloaded as err:
                group = Future()
                group.set_exception(err)
            for index, i in enumerate(members):
                out[i] = _Searched(group, index)
        return out

    async def encode_text(self, text: str) -> Vector:
        return cast(Vector, await self.batcher.submit("text", text))

    async def encode_image(self, image: Image.Image) -> Vector:
        return cast(Vector, await self.batcher.submit("image", image))

    async def encode(self, query: str | Image.Image) -> Vector:
        if isinstance(query, str):
            return await self.encode_text(query)
        return await self.encode_image(query)

    # -- catalog (thread pool) -----------------------------------------------------------------
    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _search_batch(self, key: str, groups: list[list[Vector]]
                      ) -> list[list[list[Hit] | StaleVector]]:
        """Groups of searches sharing (modality, k, labels) in one catalog call (search
        thread): usually one group, an encoder batch; more when batches queued meanwhile."""
        vectors = [v for group in groups for v in group]
        found = iter(self._search_rows(key, vectors))
        return [[next(found) for _ in group] for group in groups]

    def _search_rows(self, key: str, vectors: list[Vector]) -> list[list[Hit] | StaleVector]:
        modality, k, pairs = json.loads(key)
        live = self.catalog.checkpoint_id
        rows = [vector.row for vector in vectors if vector.checkpoint_id == live]
        found = iter(self.catalog.search(np.stack(rows), k, modality, dict(pairs) or None)
                     if rows else [])
        out: list[list[Hit] | StaleVector] = []
        for vector in vectors:
            hits = next(found) if vector.checkpoint_id == live else None
            # None: encoded by another encoder; a foreign record: the catalog reloaded between
            # the check and the search. Either way the caller encodes again.
            stale = hits is None or any(h.record.checkpoint_id != vector.checkpoint_id
                                        for h in hits)
            out.append(StaleVector() if stale or hits is None else hits)
        return out

    def _ingest(self, items: Sequence[NewItem], vectors: Sequence[Vector]
                ) -> list[tuple[int, bool]]:
        from index.catalog import StaleCheckpoint

        made_by = {vector.checkpoint_id for vector in vectors}
        if len(made_by) != 1:
            raise StaleVector
        try:
            return self.catalog.ingest(items, np.stack([v.row for v in vectors]),
                                       checkpoint_id=made_by.pop())
        except StaleCheckpoint as err:
            raise StaleVector from err

    async def _settle(self) -> None:
        """After a stale vector: wait while a swap is half done (catalog and encoder differ)."""
        while self.encoder.checkpoint_id != self.catalog.checkpoint_id:
            await asyncio.sleep(0.02)

    async def search(self, query: str | Image.Image, k: int, modality: str,
                     labels: Mapping[str, str] | None = None) -> list[Hit]:
        """Encode (batched) then search; encode again if a checkpoint swap came in between.
        The caller bounds the whole by the request timeout."""
        key = json.dumps([modality, k, sorted((labels or {}).items())])
        kind = "text" if isinstance(query, str) else "image"
        while True:
            share = cast(_Searched, await self.batcher.submit(kind, _SearchQuery(query, key)))
            # shield: a caller that times out must not cancel its batch-mates' group search
            hits = (await asyncio.shield(asyncio.wrap_future(share.group)))[share.index]
            if not isinstance(hits, StaleVector):
                return hits
            await self._settle()

    async def ingest(self, items: Sequence[NewItem], queries: Sequence[str | Image.Image]
                     ) -> list[tuple[int, bool]]:
        while True:
            vectors = await asyncio.gather(*(self.encode(query) for query in queries))
            try:
                return await self.run(self._ingest, items, vectors)
            except StaleVector:
                await self._settle()

    async def get(self, item_id: int) -> Record | None:
        return await self.run(self.catalog.get, item_id)

    async def delete(self, item_id: int) -> bool:
        return await self.run(self.catalog.delete, item_id)

    # -- re-ranking (on an encoder worker thread: torch stays off the event loop) ---------------
    @property
    def can_rerank(self) -> bool:
        return bool(getattr(self.encoder, "can_rerank", False))

    async def rerank_images(self, text: str, images: Sequence[Image.Image]) -> np.ndarray:
        return await self.batcher.call(lambda: self.encoder.score_text_to_images(text, images))

    async def rerank_texts(self, image: Image.Image, texts: Sequence[str]) -> np.ndarray:
        return await self.batcher.call(lambda: self.encoder.score_image_to_texts(image, texts))

    # -- generations ---------------------------------------------------------------------------
    async def reload(self, new_encoder: Encoder | None = None) -> bool:
        """Adopt the index generation CURRENT names, and `new_encoder` with it when given."""
        if new_encoder is None:
            return await self.run(self.catalog.reload)

        def swap() -> bool:  # on an encoder thread; a batch that other workers are running
            self.encoder = new_encoder  # with the old encoder gives stale vectors, encoded again
            self.swaps += 1
            return self.catalog.reload()

        changed: bool = await self.batcher.call(swap)
        if self.catalog.checkpoint_id != new_encoder.checkpoint_id:
            log.error("index serves checkpoint %s but the new encoder is %s",
                      self.catalog.checkpoint_id, new_encoder.checkpoint_id)
        log.info("now serving checkpoint %s", new_encoder.checkpoint_id)
        return changed
