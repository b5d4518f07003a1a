"""The engine: one encoder behind the dynamic batcher, one catalog behind a thread pool.

Neither torch nor FAISS/SQLite runs on the event loop. Every vector is tagged with the encoder
generation that made it; when a re-index job swaps in a new checkpoint, the catalog reload and
the encoder swap happen together under the write side of a readers-writer lock, and a query
encoded by the old encoder is re-encoded instead of being searched in the new space. A reload
with the same checkpoint needs no lock at all: the catalog finishes in-flight searches on the
old generation by itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from PIL import Image

from service.batching import DynamicBatcher
from service.settings import Settings

if TYPE_CHECKING:
    from index.catalog import Catalog, Hit, NewItem, Record

    from models.inference import Encoder

log = logging.getLogger("service.engine")
R = TypeVar("R")


class RWLock:
    """Many readers or one writer; a waiting writer stops new readers (no writer starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self):  # type: ignore[no-untyped-def]
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self):  # type: ignore[no-untyped-def]
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass(frozen=True)
class Vector:
    row: np.ndarray  # float32 (d,), unit norm
    generation: int


class StaleVector(Exception):
    """The encoder changed between encoding and use; encode again."""


class Engine:
    def __init__(self, encoder: Encoder, catalog: Catalog, settings: Settings,
                 on_batch: Callable[[str, int, float], None] | None = None) -> None:
        self.encoder = encoder
        self.catalog = catalog
        self.settings = settings
        self.generation = 0
        self._swap = RWLock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="catalog")
        self.batcher: DynamicBatcher[Vector] = DynamicBatcher(
            self._encode_batch, max_size=settings.batch_max_size,
            max_wait_s=settings.batch_wait_ms / 1000, queue_max=settings.queue_max,
            on_batch=on_batch,
        )

    @classmethod
    def load(cls, settings: Settings,
             on_batch: Callable[[str, int, float], None] | None = None) -> Engine:
        from index.catalog import Catalog

        from models.inference import Encoder

        encoder = Encoder.load(settings.checkpoint, settings.device)
        catalog = Catalog.open(Path(settings.index), checkpoint_id=encoder.checkpoint_id,
                               dim=encoder.dim)
        log.info("loaded checkpoint %s (%s, dim %d) and index %s with %d items",
                 encoder.checkpoint_id, encoder.method_name, encoder.dim, settings.index,
                 catalog.count())
        return cls(encoder, catalog, settings, on_batch)

    def close(self) -> None:
        self.batcher.close()
        self._pool.shutdown(wait=True)
        self.catalog.close()

    # -- encoder (worker thread) ---------------------------------------------------------------
    def _encode_batch(self, kind: str, payloads: list[Any]) -> list[Vector]:
        encoder, generation = self.encoder, self.generation  # swapped only on this thread
        rows = encoder.encode_texts(payloads) if kind == "text" else \
            encoder.encode_images(payloads)
        return [Vector(row, generation) for row in rows]

    async def encode_text(self, text: str) -> Vector:
        return await self.batcher.submit("text", text)

    async def encode_image(self, image: Image.Image) -> Vector:
        return await self.batcher.submit("image", image)

    async def encode(self, query: str | Image.Image) -> Vector:
        if isinstance(query, str):
            return await self.encode_text(query)
        return await self.encode_image(query)

    # -- catalog (thread pool) -----------------------------------------------------------------
    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _fresh(self, vectors: Sequence[Vector]) -> np.ndarray:
        """Called under the read lock: the rows, if all come from the live encoder."""
        if any(vector.generation != self.generation for vector in vectors):
            raise StaleVector
        return np.stack([vector.row for vector in vectors]).astype(np.float32, copy=False)

    def _search(self, vector: Vector, k: int, modality: str,
                labels: Mapping[str, str] | None) -> list[Hit]:
        with self._swap.read():
            return self.catalog.search(self._fresh([vector]), k, modality, labels)[0]

    def _ingest(self, items: Sequence[NewItem], vectors: Sequence[Vector]
                ) -> list[tuple[int, bool]]:
        with self._swap.read():
            return self.catalog.ingest(items, self._fresh(vectors))

    async def search(self, query: str | Image.Image, k: int, modality: str,
                     labels: Mapping[str, str] | None = None) -> list[Hit]:
        """Encode (batched) then search; re-encode if a checkpoint swap came in between."""
        for _ in range(3):
            vector = await self.encode(query)
            try:
                return await self.run(self._search, vector, k, modality, labels)
            except StaleVector:
                continue
        raise RuntimeError("the encoder changed three times during one query")

    async def ingest(self, items: Sequence[NewItem], queries: Sequence[str | Image.Image]
                     ) -> list[tuple[int, bool]]:
        for _ in range(3):
            vectors = await asyncio.gather(*(self.encode(query) for query in queries))
            try:
                return await self.run(self._ingest, items, vectors)
            except StaleVector:
                continue
        raise RuntimeError("the encoder changed three times during one ingest")

    async def get(self, item_id: int) -> Record | None:
        return await self.run(self.catalog.get, item_id)

    async def delete(self, item_id: int) -> bool:
        return await self.run(self.catalog.delete, item_id)

    # -- re-ranking (worker thread: torch stays on one thread) ---------------------------------
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
        if new_encoder is None or new_encoder.checkpoint_id == self.encoder.checkpoint_id:
            return await self.run(self.catalog.reload)

        def swap() -> bool:  # on the encoder thread: no batch is running meanwhile
            with self._swap.write():
                changed = self.catalog.reload()
                self.encoder = new_encoder
                self.generation += 1
            return changed

        changed: bool = await self.batcher.call(swap)
        log.info("now serving checkpoint %s (generation %d)", new_encoder.checkpoint_id,
                 self.generation)
        return changed
