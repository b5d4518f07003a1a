"""The retriever: what the use cases call to encode, search, store and read items. It puts
together the encoder's lifecycle (service.lifecycle), the two-stage batching of searches
(service.pipeline) and one catalog behind a thread pool, so that neither torch nor
FAISS/SQLite runs on the event loop.

A vector that turns out to belong to another checkpoint than the index (a swap came in between,
service.lifecycle) is encoded again after the lifecycle has settled; an ingest gets the
catalog's StaleCheckpoint and does the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from PIL import Image

from index.words import captions_of
from service.batching import name_os_thread
from service.lifecycle import EncoderLifecycle, load_encoder
from service.pipeline import OnBatch, SearchPipeline
from service.schemas import SearchMode
from service.settings import Settings
from service.vectors import ItemRef, SearchParams, StaleVector, Vector

if TYPE_CHECKING:
    from index.catalog import Catalog, Hit, NewItem, Record
    from index.hybrid import Fusion
    from models.inference import Encoder

log = logging.getLogger("service.retriever")
R = TypeVar("R")


class Retriever:
    def __init__(self, encoder: Encoder, catalog: Catalog, settings: Settings,
                 on_batch: OnBatch | None = None) -> None:
        self._catalog = catalog
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="catalog",
                                        initializer=name_os_thread, initargs=("catalog",))
        self._labels: tuple[str, dict[str, frozenset[str]]] | None = None  # by generation
        self._worded: dict[tuple[str, str], bool] = {}  # (generation, modality): has words
        self._encoders = EncoderLifecycle(encoder, catalog, settings, self.on_encoder_thread)
        self._pipeline = SearchPipeline(lambda: self._encoders.current, catalog, settings,
                                        on_batch)

    @classmethod
    def load(cls, settings: Settings, on_batch: OnBatch | None = None) -> Retriever:
        from index.catalog import Catalog

        encoder = load_encoder(settings.checkpoint, settings)
        catalog = Catalog.open(Path(settings.index), checkpoint_id=encoder.checkpoint_id,
                               dim=encoder.dim, levels=encoder.levels,
                               gpu=settings.search_on_gpu, backend=settings.backend())
        log.info("loaded checkpoint %s (%s, dim %d, text queries on %s) and index %s with %d "
                 "items", encoder.checkpoint_id, encoder.method_name, encoder.dim,
                 encoder.text_runtime, settings.index, catalog.count())
        return cls(encoder, catalog, settings, on_batch)

    def close(self) -> None:
        self._pipeline.close()
        self._pool.shutdown(wait=True)
        self._catalog.close()

    # -- what is served --------------------------------------------------------------------------
    @property
    def checkpoint_id(self) -> str:
        """The checkpoint of the encoder serving now."""
        return self._encoders.current.checkpoint_id

    @property
    def method_name(self) -> str:
        return self._encoders.current.method_name

    @property
    def dim(self) -> int:
        return self._encoders.current.dim

    @property
    def index_checkpoint_id(self) -> str:
        """The checkpoint of the live index generation (the encoder's, once settled)."""
        return self._catalog.checkpoint_id

    @property
    def checkpoint_path(self) -> str:
        return self._encoders.checkpoint_path

    async def label_values(self, refresh: bool = False) -> dict[str, frozenset[str]]:
        """Per label level, coarse to fine, the values the checkpoint was trained on and those
        stored items carry; kept per generation (`refresh` reads the stored ones again)."""
        generation = self._catalog.generation
        if refresh or self._labels is None or self._labels[0] != generation:
            stored = await self.run(self._catalog.label_values)
            trained = getattr(self._encoders.current, "label_sets", {}) or {}
            self._labels = (generation, {level: frozenset(values) | set(trained.get(level, ()))
                                         for level, values in stored.items()})
        return self._labels[1]

    @property
    def search_tuning(self) -> dict[str, dict]:
        return self._catalog.search_tuning

    @property
    def fusion(self) -> Fusion:  # how hybrid search combines its signals (models.fusion)
        return self._catalog.fusion

    @property
    def text_fields(self) -> tuple[str, ...]:
        return self._catalog.text_fields

    async def default_mode(self, modality: str) -> SearchMode:
        """hybrid where the index holds words for items of `modality`, else vector."""
        key = (self._catalog.generation, modality)
        if not self._worded.get(key):  # asked again while False: an ingest may bring words
            self._worded[key] = await self.run(self._catalog.has_words, modality)
        return "hybrid" if self._worded[key] else "vector"

    @property
    def media_dir(self) -> Path:
        return Path(self._catalog.media_dir)

    @property
    def can_rerank(self) -> bool:
        return bool(getattr(self._encoders.current, "can_rerank", False))

    def alive(self) -> bool:
        return self._pipeline.alive()

    def gauges(self) -> dict[str, float]:
        """Index size, encoder queue and swaps, for the metrics scrape (blocking)."""
        return {"items_image": self._catalog.count("image"),
                "items_text": self._catalog.count("text"),
                "queue_depth": self._pipeline.depth(), "encoder_swaps": self._encoders.swaps}

    def queued(self) -> int:
        return self._pipeline.depth()

    # -- threads ---------------------------------------------------------------------------------
    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        """`fn(*args)` on the catalog's thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def on_encoder_thread(self, fn: Callable[[], Any]) -> Any:
        return await self._pipeline.on_encoder_thread(fn)

    async def follow(self) -> None:
        """Serve the generation CURRENT names once a re-index (of any process) sealed the one
        served, with its encoder (waited for as a search waits: `settle`)."""
        await self.run(self._catalog.follow)
        if self.index_checkpoint_id != self.checkpoint_id:
            await self._encoders.settle()

    # -- searching -------------------------------------------------------------------------------
    async def encode(self, query: str | Image.Image) -> Vector:
        return await self._pipeline.encode(query)

    async def search(self, query: str | Image.Image, params: SearchParams) -> list[Hit]:
        """Encode (batched) then search; encode again if a checkpoint swap came in between.
        Each wait is bounded (the batcher's queue, the lifecycle's settle); the caller bounds
        the whole."""
        while True:
            hits = await self._pipeline.search(query, params)
            if not isinstance(hits, StaleVector):
                return hits
            await self._encoders.settle()

    async def similar(self, ref: ItemRef, params: SearchParams) -> list[Hit] | None:
        """Search with a stored item's vector (None: no such item), on the search thread as
        every search. No checkpoint check: a stored vector belongs to its generation's
        checkpoint, the space the catalog searches, whichever encoder is loaded."""
        return await self._pipeline.similar(ref, params)

    async def rerank_images(self, text: str, images: Sequence[Image.Image]) -> np.ndarray:
        return await self.on_encoder_thread(
            lambda: self._encoders.current.score_text_to_images(text, images))

    async def rerank_texts(self, image: Image.Image, texts: Sequence[str]) -> np.ndarray:
        return await self.on_encoder_thread(
            lambda: self._encoders.current.score_image_to_texts(image, texts))

    # -- items -----------------------------------------------------------------------------------
    async def ingest(self, items: Sequence[NewItem], queries: Sequence[str | Image.Image],
                     timeout_s: float) -> list[tuple[int, bool]]:
        """Encode then store durably; encode again if a checkpoint swap came in between. The
        waits for vectors (encoder queue, a swap) end after `timeout_s` (TimeoutError); the
        write itself, once started, runs to its end (it is short), so an answer never says
        failed for an item that was stored."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        captions = captions_of(items, self._catalog.text_fields)
        texts = [*queries, *(w for w in dict.fromkeys(captions) if w and w not in queries)]
        while True:
            async with asyncio.timeout_at(deadline):
                vectors = await asyncio.gather(*(self.encode(query) for query in texts))
            by_text = {q: v for q, v in zip(texts, vectors, strict=True) if isinstance(q, str)}
            caption_vectors = [by_text[w] if w else None for w in captions]
            try:
                return await asyncio.shield(self.run(self._store, items, vectors[:len(queries)],
                                                     caption_vectors))
            except StaleVector:
                async with asyncio.timeout_at(deadline):
                    await self._encoders.settle()

    def _store(self, items: Sequence[NewItem], vectors: Sequence[Vector],
               captions: Sequence[Vector | None]) -> list[tuple[int, bool]]:
        """Items, their vectors and caption vectors (index.words), all of one checkpoint."""
        from index.catalog import StaleCheckpoint

        made_by = {v.checkpoint_id for v in [*vectors, *captions] if v is not None}
        if len(made_by) != 1:
            raise StaleVector
        try:
            return self._catalog.ingest(items, np.stack([v.row for v in vectors]),
                                        checkpoint_id=made_by.pop(),
                                        captions=[None if c is None else c.row for c in captions])
        except StaleCheckpoint as err:
            raise StaleVector from err

    async def get(self, item_id: int) -> Record | None:
        return await self.run(self._catalog.get, item_id)

    async def get_many(self, item_ids: Sequence[int]) -> list[Record | None]:
        return await self.run(lambda: [self._catalog.get(i) for i in item_ids])

    async def get_by_key(self, key: str) -> Record | None:
        return await self.run(self._catalog.get_by_key, key)

    async def get_by_keys(self, keys: Sequence[str]) -> list[Record]:
        """The items these keys name now (missing keys left out), in one catalog call."""
        found = await self.run(lambda: [self._catalog.get_by_key(key) for key in keys])
        return [record for record in found if record is not None]

    async def find_image(self, content_hash: str) -> int | None:
        """The id of the image item holding this content, if any."""
        return await self.run(self._catalog.find, "image", content_hash)

    async def count(self, modality: str) -> int:
        return await self.run(self._catalog.count, modality)

    async def delete(self, item_id: int) -> bool:
        return await self.run(self._catalog.delete, item_id)

    async def delete_by_key(self, key: str) -> Record | None:
        return await self.run(self._catalog.delete_by_key, key)

    # -- re-index jobs ---------------------------------------------------------------------------
    async def preload(self, checkpoint: str) -> str | None:
        return await self._encoders.preload(checkpoint)

    async def adopt(self, checkpoint: str, preloaded: str | None) -> str:
        return await self._encoders.adopt(checkpoint, preloaded)

