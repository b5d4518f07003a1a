"""`Catalog`: the index layer's facade over one live generation of an index
directory: SQLite metadata (the source of truth, holding every vector) + one FAISS store per
modality (a derived view) + the manifest.

Durability and recovery. `ingest` and `delete` commit to SQLite (WAL, synchronous=FULL) before
they touch FAISS and before they return, so an acknowledged write survives any crash. Every
write also appends to a journal in the same transaction. FAISS snapshots are written now and
then (and on close) together with the journal sequence they contain; opening a generation loads
the latest snapshot and replays the journal after it (`_catch_up`), then checks that each
store's count equals the metadata count and rebuilds that store from the stored vectors if not.
A write killed before its commit leaves nothing (SQLite rolls it back): no half-item can appear.
The same catch-up runs before each search, so several processes (uvicorn workers) sharing one
index directory see each other's writes.

Generations. `xmr index build` writes a new generation and seals the old one in the same
SQLite transaction that swaps CURRENT; a write that finds its generation sealed reloads and
retries on the new one, so no write is lost across a swap (index.build explains the catch-up).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from index import generations
from index.backends import BackendSettings
from index.manifest import Manifest, ManifestMismatch
from index.metadata import Sealed
from index.records import Hit, NewItem, Record, check_modality
from index.snapshots import (
    Generation,
    catch_up,
    create_generation,
    open_generation,
    snapshot_seq,
    write_snapshot,
)
from index.store import check_vectors

__all__ = ["Catalog", "Hit", "ManifestMismatch", "NewItem", "Record", "StaleCheckpoint"]

log = logging.getLogger(__name__)
UNIT_TOLERANCE = 1e-3


class StaleCheckpoint(ManifestMismatch):
    """Vectors of one checkpoint offered to a generation of another (a re-index swapped in a
    new checkpoint): load the encoder of `Catalog.checkpoint_id`, re-encode and retry."""


class Catalog:
    """Thread-safe; all access is serialised by one lock (FAISS parallelises inside a search)."""

    def __init__(self, root: Path, gen: Generation, snapshot_every: int, gpu: bool,
                 backend: BackendSettings) -> None:
        self.root = root
        self._gen = gen
        self._lock = threading.RLock()
        self._snapshot_every = snapshot_every
        self._gpu = gpu
        self._backend = backend
        self.media_dir = root / generations.MEDIA
        self.media_dir.mkdir(exist_ok=True)

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, index_dir: str | Path, *, checkpoint_id: str, dim: int,
             levels: Sequence[str] = (), snapshot_every: int = 10_000,
             gpu: bool = False, backend: BackendSettings | None = None) -> Catalog:
        """Open (or create, empty) an index directory for one encoder. Raises ManifestMismatch
        when it belongs to another checkpoint or dimension. `backend` chooses the vector store
        of a new directory (default FAISS); an existing one keeps its own. `gpu`: search on a
        GPU copy of each FAISS index (decided at the edge: index.store.use_gpu)."""
        backend = backend or BackendSettings()
        root = Path(index_dir)
        live = generations.current(root)
        if live is None:
            root.mkdir(parents=True, exist_ok=True)
            live = create_generation(root, Manifest(checkpoint_id, int(dim), tuple(levels)),
                                     backend=backend)
            generations.swap(root, live)
        Manifest.read(live).check(checkpoint_id, int(dim), live)
        return cls(root, open_generation(live, gpu, backend), snapshot_every, gpu, backend)

    @property
    def checkpoint_id(self) -> str:
        return self._gen.manifest.checkpoint_id

    @property
    def checkpoint_path(self) -> str | None:
        """The checkpoint file the live generation was built with, when its manifest names it
        (`xmr index build` does): what a service follows when an index is rebuilt under it."""
        path = self._gen.manifest.extra.get("checkpoint")
        return str(path) if path else None

    @property
    def dim(self) -> int:
        return self._gen.manifest.dim

    @property
    def levels(self) -> tuple[str, ...]:
        return self._gen.manifest.levels

    @property
    def generation(self) -> str:
        return self._gen.path.name

    # -- writes -------------------------------------------------------------------------------
    def ingest(self, items: Sequence[NewItem], vectors: np.ndarray, *,
               checkpoint_id: str | None = None) -> list[tuple[int, bool]]:
        """(id, created) per item; equal (modality, content_hash) -> (existing id, False).
        Returns only once durable. `checkpoint_id`: the encoder that made `vectors`; when given
        and not the live generation's, raises StaleCheckpoint instead of mixing spaces."""
        items = list(items)
        if not all(isinstance(item, NewItem) for item in items):
            raise TypeError("items must be NewItem instances")
        vectors = self._check_unit(vectors, "vectors")
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
        made_by = checkpoint_id or self.checkpoint_id
        for _attempt in range(3):
            with self._lock:
                gen = self._gen
                if made_by != gen.manifest.checkpoint_id:
                    raise StaleCheckpoint(
                        f"vectors of checkpoint {made_by} offered to generation {gen.path.name}"
                        f" of checkpoint {gen.manifest.checkpoint_id}: re-encode and retry")
                try:
                    with self._writing(gen):
                        result = gen.meta.insert(items, vectors, gen.manifest.checkpoint_id)
                except Sealed:
                    self.reload()
                    continue
                self._catch_up(gen)
                return result
        raise RuntimeError("index generation kept changing during an ingestion")

    def delete(self, item_id: int) -> bool:
        """True when the item existed; durable on return, never returned by search after."""
        item_id = _check_id(item_id)
        for _attempt in range(3):
            with self._lock:
                gen = self._gen
                try:
                    with self._writing(gen):
                        modality = gen.meta.delete(item_id)
                except Sealed:
                    self.reload()
                    continue
                self._catch_up(gen)
                return modality is not None
        raise RuntimeError("index generation kept changing during a delete")

    # -- reads --------------------------------------------------------------------------------
    def get(self, item_id: int) -> Record | None:
        with self._lock:
            return self._gen.meta.get(_check_id(item_id))

    def find(self, modality: str, content_hash: str) -> int | None:
        """The id of the item with this content, if one is stored."""
        with self._lock:
            return self._gen.meta.id_of(check_modality(modality), content_hash)

    def count(self, modality: str | None = None) -> int:
        with self._lock:
            self._catch_up(self._gen)
            if modality is None:
                return sum(store.count() for store in self._gen.stores.values())
            return self._gen.stores[check_modality(modality)].count()

    def search(self, queries: np.ndarray, k: int, modality: str,
               labels: Mapping[str, str] | None = None) -> list[list[Hit]]:
        """Nearest items of `modality` (the modality of the RESULTS) for each unit query row,
        best first; `labels` = {level_name: value}, all must match."""
        check_modality(modality)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        queries = self._check_unit(queries, "queries")
        with self._lock:
            gen = self._gen
            self._catch_up(gen)
            allow = None if not labels else gen.meta.ids_with_labels(
                modality, self._label_filter(gen, labels))
            if allow is not None and not len(allow):
                return [[] for _ in range(len(queries))]
            scores, ids = gen.stores[modality].search(queries, int(k), allow)
            records = gen.meta.get_many(sorted({int(i) for i in ids.ravel() if i >= 0}))
        return [[Hit(int(i), float(s), records[int(i)])
                 for s, i in zip(row_s, row_i, strict=True) if i >= 0 and int(i) in records]
                for row_s, row_i in zip(scores, ids, strict=True)]

    # -- generations and snapshots ------------------------------------------------------------
    def reload(self) -> bool:
        """Adopt the generation CURRENT names (after `xmr index build`). True when it changed.
        The new generation may hold another checkpoint: compare `checkpoint_id` after."""
        live = generations.current(self.root)
        if live is None or live == self._gen.path:
            return False
        fresh = open_generation(live, self._gpu, self._backend)
        with self._lock:
            old, self._gen = self._gen, fresh
        old.close()
        log.info("index now serves %s (checkpoint %s)", live.name, self.checkpoint_id)
        return True

    def snapshot(self) -> None:
        with self._lock:
            write_snapshot(self._gen)

    def close(self) -> None:
        with self._lock:
            try:
                if self._gen.meta.sealed() is None:
                    write_snapshot(self._gen)
            finally:
                self._gen.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------------
    @contextmanager
    def _writing(self, gen: Generation) -> Iterator[None]:
        """A write transaction on a generation that is still the live one: checked under the
        SQLite write lock, which the re-index job holds while it swaps CURRENT."""
        with gen.meta.write():
            if generations.current(self.root) != gen.path:
                raise Sealed(f"{gen.path.name} is no longer the live generation")
            yield

    def _catch_up(self, gen: Generation) -> None:
        applied = catch_up(gen)
        if applied and gen.applied - snapshot_seq(gen.path) >= self._snapshot_every:
            write_snapshot(gen)

    def _check_unit(self, vectors: np.ndarray, what: str) -> np.ndarray:
        vectors = check_vectors(vectors, self.dim, what)
        norms = np.linalg.norm(vectors, axis=1)
        if len(norms) and np.abs(norms - 1).max() > UNIT_TOLERANCE:
            raise ValueError(f"{what} must be unit rows (L2 norm 1); got norms "
                             f"{norms.min():.4f}..{norms.max():.4f}")
        return vectors

    @staticmethod
    def _label_filter(gen: Generation, labels: Mapping[str, str]) -> dict[int, str]:
        levels = gen.manifest.levels
        wanted: dict[int, str] = {}
        for level, value in labels.items():
            if level not in levels:
                raise ValueError(f"unknown label level {level!r}; this index has {levels}")
            if not isinstance(value, str):
                raise TypeError(f"label filter values must be strings, got {value!r}")
            wanted[levels.index(level)] = value
        return wanted


def _check_id(item_id: int) -> int:
    if isinstance(item_id, bool) or not isinstance(item_id, int | np.integer):
        raise TypeError(f"item id must be an int, not {type(item_id).__name__}")
    return int(item_id)
