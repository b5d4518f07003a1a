"""The retriever: one encoder behind the dynamic batcher, one catalog behind a thread pool.

Neither torch nor FAISS/SQLite runs on the event loop. The encoder's worker threads share one
model (inference only reads it), each running its own batches. Every vector carries the
checkpoint id of the encoder that made it, and is only ever compared with items of that same
checkpoint: when a re-index job swaps in a new checkpoint, the catalog (whose generation names
its checkpoint, as every hit's record does) and the encoder change one after the other, and a
query that straddles the change (or was encoded by a worker still busy with the old encoder)
is encoded again instead of being searched in the wrong space; an ingest gets the catalog's
StaleCheckpoint and does the same. No lock is held across requests and none is dropped: they
wait for the pair to agree, at most `swap_wait_s` (then a CheckpointMismatch: a 503 problem).
A search by a stored item needs no encoder and no such check: it runs on the search thread
with the vector its generation stores.

An index rebuilt under a running service by `xmr index build` with another checkpoint (not
through /v1/jobs) is followed too: the first request that meets the new generation starts
loading the checkpoint its manifest names, and the encoder is swapped when it is ready; until
then requests wait (bounded) and get a 503, and when that checkpoint cannot be loaded a 409.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
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

log = logging.getLogger("service.retriever")
R = TypeVar("R")


@dataclass(frozen=True)
class Vector:
    row: np.ndarray  # float32 (d,), unit norm
    checkpoint_id: str  # of the encoder that made it


class StaleVector(Exception):
    """The encoder changed between encoding and use; encode again."""


class CheckpointMismatch(Exception):
    """The index serves another checkpoint than the encoder, past the bounded wait: `loading`
    when that checkpoint's encoder is on its way (retry soon), else it cannot be loaded."""

    def __init__(self, detail: str, *, loading: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.loading = loading


@dataclass(frozen=True)
class SearchKey:
    """What the searches one FAISS call can share."""
    modality: str
    k: int
    labels: tuple[tuple[str, str], ...]  # sorted (level, value) pairs
    where: tuple[tuple[str, str], ...] = ()  # sorted (field, canonical JSON value) pairs

    def filters(self) -> dict[str, Any]:
        """The catalog's `labels` and `where` arguments."""
        return {"labels": dict(self.labels) or None,
                "where": {name: json.loads(value) for name, value in self.where} or None}


@dataclass(frozen=True)
class _BySimilar:
    """The search stage's batch kind for searches by stored items (no encoder, no vectors)."""
    key: SearchKey


@dataclass(frozen=True)
class ItemRef:
    """A stored item, by id or by key (exactly one)."""
    item_id: int | None = None
    key: str | None = None


@dataclass(frozen=True)
class _SearchQuery:
    """An encoder payload whose vector goes straight on to the search stage."""
    query: str | Image.Image
    key: SearchKey


@dataclass(frozen=True)
class _Searched:
    """One query's share of a group search: row `index` of what `group` resolves to."""
    group: Future[list[list[Hit] | StaleVector]]
    index: int


class Retriever:
    def __init__(self, encoder: Encoder, catalog: Catalog, settings: Settings,
                 on_batch: Callable[[str, int, float], None] | None = None) -> None:
        self.encoder = encoder
        self.catalog = catalog
        self.settings = settings
        self.swaps = 0
        self.checkpoint_path = str(settings.checkpoint)  # the file the encoder was loaded from
        self.preloaded: dict[str, Encoder] = {}  # by checkpoint id (a re-index job's)
        self._following: dict[str, asyncio.Task[None]] = {}
        self._unloadable: dict[str, str] = {}  # checkpoint id -> why it cannot be followed
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
        self.searcher: DynamicBatcher[Any] = DynamicBatcher(
            self._search_batch, max_size=settings.batch_max_size, max_wait_s=0.0,
            queue_max=settings.queue_max, name="search", init=self._search_thread_init,
            rows=lambda job: len(job) if isinstance(job, list) else 1,  # a group of query rows
            on_batch=None if on_batch is None else
            (lambda _key, size, seconds: on_batch("search", size, seconds)),
        )

    @classmethod
    def load(cls, settings: Settings,
             on_batch: Callable[[str, int, float], None] | None = None) -> Retriever:
        from index.catalog import Catalog
        from models.inference import Encoder

        # encoder_threads: each worker thread's OpenMP team
        encoder = Encoder.load(settings.checkpoint, settings.device, settings.encoder_threads,
                               settings.encoder_runtime)
        catalog = Catalog.open(Path(settings.index), checkpoint_id=encoder.checkpoint_id,
                               dim=encoder.dim, levels=encoder.levels,
                               gpu=settings.search_on_gpu, backend=settings.backend())
        log.info("loaded checkpoint %s (%s, dim %d, text queries on %s) and index %s with %d "
                 "items", encoder.checkpoint_id, encoder.method_name, encoder.dim,
                 encoder.text_runtime, settings.index, catalog.count())
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
        groups: dict[SearchKey, list[int]] = {}
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

    def _search_batch(self, key: SearchKey | _BySimilar, groups: list[Any]) -> list[Any]:
        """Groups of searches sharing (modality, k, filters) in one catalog call (search
        thread): usually one group, an encoder batch; more when batches queued meanwhile.
        Searches by stored items run one catalog call each (the catalog reads the vector)."""
        if isinstance(key, _BySimilar):
            return [self._similar(key.key, ref) for ref in groups]
        vectors = [v for group in groups for v in group]
        found = iter(self._search_rows(key, vectors))
        return [[next(found) for _ in group] for group in groups]

    def _search_rows(self, key: SearchKey, vectors: list[Vector]
                     ) -> list[list[Hit] | StaleVector]:
        live = self.catalog.checkpoint_id
        rows = [vector.row for vector in vectors if vector.checkpoint_id == live]
        found = iter(self.catalog.search(np.stack(rows), key.k, key.modality, **key.filters())
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

    def _similar(self, key: SearchKey, ref: ItemRef) -> list[Hit] | None:
        return self.catalog.similar(key.k, key.modality, item_id=ref.item_id, key=ref.key,
                                    **key.filters())

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
        """After a stale vector: wait, at most `swap_wait_s`, for the encoder and the catalog's
        generation to name one checkpoint (a swap half done, or a generation of another
        checkpoint being followed); CheckpointMismatch past that."""
        deadline = asyncio.get_running_loop().time() + self.settings.swap_wait_s
        while (wanted := self.catalog.checkpoint_id) != self.encoder.checkpoint_id:
            self._follow(wanted)
            if wanted in self._unloadable:
                raise CheckpointMismatch(self._unloadable[wanted], loading=False)
            if asyncio.get_running_loop().time() >= deadline:
                raise CheckpointMismatch(
                    f"the index now serves checkpoint {wanted} and this service encodes with "
                    f"{self.encoder.checkpoint_id}: the encoder of {wanted} is loading",
                    loading=True)
            await asyncio.sleep(0.02)

    async def search(self, query: str | Image.Image, key: SearchKey) -> list[Hit]:
        """Encode (batched) then search; encode again if a checkpoint swap came in between.
        Each wait is bounded (the batcher's queue, `_settle`); the caller bounds the whole."""
        kind = "text" if isinstance(query, str) else "image"
        while True:
            share = cast(_Searched, await self.batcher.submit(kind, _SearchQuery(query, key)))
            # shield: a caller that times out must not cancel its batch-mates' group search
            hits = (await asyncio.shield(asyncio.wrap_future(share.group)))[share.index]
            if not isinstance(hits, StaleVector):
                return hits
            await self._settle()

    async def similar(self, ref: ItemRef, key: SearchKey) -> list[Hit] | None:
        """Search with a stored item's vector (None: no such item), on the search thread as
        every search. No checkpoint check: a stored vector belongs to its generation's
        checkpoint, the space the catalog searches, whichever encoder is loaded."""
        found: list[Hit] | None = await self.searcher.submit(_BySimilar(key), ref)
        return found

    async def ingest(self, items: Sequence[NewItem], queries: Sequence[str | Image.Image],
                     timeout_s: float) -> list[tuple[int, bool]]:
        """Encode then store durably; encode again if a checkpoint swap came in between. The
        waits for vectors (encoder queue, a swap) end after `timeout_s` (TimeoutError); the
        write itself, once started, runs to its end (it is short), so an answer never says
        failed for an item that was stored."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            async with asyncio.timeout_at(deadline):
                vectors = await asyncio.gather(*(self.encode(query) for query in queries))
            try:
                return await asyncio.shield(self.run(self._ingest, items, vectors))
            except StaleVector:
                async with asyncio.timeout_at(deadline):
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
    def _follow(self, checkpoint: str) -> None:
        """Start loading the encoder of the catalog's checkpoint (once)."""
        if checkpoint not in self._following and checkpoint not in self._unloadable:
            task = asyncio.get_running_loop().create_task(self._load_and_swap(checkpoint))
            self._following[checkpoint] = task
            task.add_done_callback(lambda _: self._following.pop(checkpoint, None))

    async def _load_and_swap(self, checkpoint: str) -> None:
        from models.inference import Encoder, checkpoint_id

        try:
            encoder = self.preloaded.pop(checkpoint, None)
            if encoder is None:
                path = self.catalog.checkpoint_path
                if path is None:
                    raise ValueError("its manifest does not name the checkpoint file")
                if await asyncio.to_thread(checkpoint_id, path) != checkpoint:
                    raise ValueError(f"{path} is no longer that checkpoint")
                log.warning("the index now serves checkpoint %s: loading %s", checkpoint, path)
                encoder = await asyncio.to_thread(Encoder.load, path, self.settings.device,
                                                  self.settings.encoder_threads,
                                                  self.settings.encoder_runtime)
            if self.encoder.checkpoint_id != checkpoint == self.catalog.checkpoint_id:
                await self.reload(encoder)
                self.checkpoint_path = self.catalog.checkpoint_path or self.checkpoint_path
        except Exception as err:  # answered to every request as a 409 problem
            self._unloadable[checkpoint] = (
                f"the index {self.settings.index} now serves checkpoint {checkpoint} (rebuilt "
                f"by `xmr index build`), whose encoder this service cannot load ({err}); "
                "restart it with that build's --checkpoint")
            log.error("%s", self._unloadable[checkpoint])

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
