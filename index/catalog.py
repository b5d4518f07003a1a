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

Keys and metadata are stored with the item, in its transaction (index.database has the rules
of keys, upserts and content); metadata filters resolve to the same id allow-list as label
filters, and the vector store searches among those ids only (no post-filtering that could
leave fewer than k hits).

Generations. `xmr index build` writes a new generation and seals the old one in the same
SQLite transaction that swaps CURRENT; a write that finds its generation sealed reloads and
retries on the new one, so no write is lost across a swap (index.build explains the catch-up).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np

from index import hybrid, layout
from index.backends import BackendSettings
from index.database import Sealed
from index.generation import (
    Generation,
    catch_up,
    create_generation,
    open_generation,
    snapshot_seq,
    write_snapshot,
)
from index.manifest import Manifest, ManifestMismatch
from index.payload import Scalar, check_key, check_where
from index.records import Hit, NewItem, Record, check_id, check_k, check_modality
from index.store import check_vectors
from models.fusion import Fusion

__all__ = ["Catalog", "Hit", "ManifestMismatch", "NewItem", "Record", "StaleCheckpoint"]

log = logging.getLogger(__name__)
UNIT_TOLERANCE = 1e-3
T = TypeVar("T")


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
        self.media_dir = root / layout.MEDIA
        self.media_dir.mkdir(exist_ok=True)

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, index_dir: str | Path, *, checkpoint_id: str, dim: int,
             levels: Sequence[str] = (), snapshot_every: int = 10_000,
             gpu: bool = False, backend: BackendSettings | None = None) -> Catalog:
        """Open (or create, empty) an index directory for one encoder. Raises ManifestMismatch
        when it belongs to another checkpoint or dimension. `backend` chooses the vector store
        of a new directory (default FAISS); an existing one keeps its own. `gpu`: search on a
        GPU copy of each FAISS index (decided at the edge: index.gpu.use_gpu)."""
        backend = backend or BackendSettings()
        root = Path(index_dir)
        live = layout.current(root)
        if live is None:
            root.mkdir(parents=True, exist_ok=True)
            live = create_generation(root, Manifest(checkpoint_id, int(dim), tuple(levels)),
                                     backend=backend)
            layout.swap(root, live)
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

    @property
    def fusion(self) -> Fusion:
        """How hybrid search combines its signals here (the manifest's, else the default)."""
        return self._gen.fusion

    @property
    def text_fields(self) -> tuple[str, ...]:
        return self._gen.manifest.text_fields

    def has_words(self, modality: str) -> bool:
        """Whether any item of `modality` has words for hybrid search to match."""
        with self._lock:
            return self._gen.meta.has_words(check_modality(modality))

    @property
    def search_tuning(self) -> dict[str, dict]:
        """Per modality, the live generation's tuned search parameter and its measured recall
        (index.tuning); empty for a generation built before tuning, or through the service."""
        return self._gen.manifest.search

    # -- writes -------------------------------------------------------------------------------
    def ingest(self, items: Sequence[NewItem], vectors: np.ndarray, *,
               checkpoint_id: str | None = None,
               captions: Sequence[np.ndarray | None] | None = None) -> list[tuple[int, bool]]:
        """(id, created) per item, in order. An item with a key that exists replaces that item
        (same id, created False); without a key, equal (modality, content_hash) gives
        (existing id, False) and changes nothing (index.database has the rules). Returns only
        once durable. `checkpoint_id`: the encoder that made `vectors`; when given and not the
        live generation's, raises StaleCheckpoint instead of mixing spaces. `captions`: per
        item, the caption vector of an image with words (the text encoder's vector of its
        words, index.words), or None."""
        items = list(items)
        if not all(isinstance(item, NewItem) for item in items):
            raise TypeError("items must be NewItem instances")
        vectors = self._check_unit(vectors, "vectors")
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
        if captions is not None:
            if len(captions) != len(items):
                raise ValueError(f"{len(items)} items but {len(captions)} captions")
            captions = [None if c is None else self._check_unit(np.asarray(c)[None], "captions")[0]
                        for c in captions]
        made_by = checkpoint_id or self.checkpoint_id

        def write(gen: Generation) -> list[tuple[int, bool]]:
            if made_by != gen.manifest.checkpoint_id:
                raise StaleCheckpoint(
                    f"vectors of checkpoint {made_by} offered to generation {gen.path.name}"
                    f" of checkpoint {gen.manifest.checkpoint_id}: re-encode and retry")
            return gen.meta.insert(items, vectors, gen.manifest.checkpoint_id,
                                   captions=captions)

        return self._write("an ingestion", write)

    def delete(self, item_id: int) -> bool:
        """True when the item existed; durable on return, never returned by search after."""
        item_id = check_id(item_id)
        return self._write("a delete", lambda gen: gen.meta.delete(item_id) is not None)

    def delete_by_key(self, key: str) -> Record | None:
        """The item deleted (None: no item has this key); durable on return."""
        key = _check_key(key)

        def write(gen: Generation) -> Record | None:
            item_id = gen.meta.id_of_key(key)
            record = None if item_id is None else gen.meta.get(item_id)
            if record is not None:
                gen.meta.delete(record.id)
            return record

        return self._write("a delete", write)

    # -- reads --------------------------------------------------------------------------------
    def get(self, item_id: int) -> Record | None:
        with self._lock:
            return self._gen.meta.get(check_id(item_id))

    def find(self, modality: str, content_hash: str) -> int | None:
        """The id of an item with this content, if one is stored (keyed items may share one
        image file: delete the file only when no item holds its content any more)."""
        with self._lock:
            return self._gen.meta.id_of(check_modality(modality), content_hash)

    def get_by_key(self, key: str) -> Record | None:
        key = _check_key(key)
        with self._lock, self._gen.meta.read():
            item_id = self._gen.meta.id_of_key(key)
            return None if item_id is None else self._gen.meta.get(item_id)

    def label_values(self) -> dict[str, set[str]]:
        """Per label level of the live generation, the values its items carry."""
        with self._lock:
            found = self._gen.meta.label_values()
            levels = self._gen.manifest.levels
        return {level: found.get(i, set()) for i, level in enumerate(levels)}

    def count(self, modality: str | None = None) -> int:
        with self._lock:
            self._catch_up(self._gen)
            if modality is None:
                return sum(store.count() for store in self._gen.stores.values())
            return self._gen.stores[check_modality(modality)].count()

    def search(self, queries: np.ndarray, k: int, modality: str,
               labels: Mapping[str, str] | None = None,
               where: Mapping[str, Scalar] | None = None, *,
               texts: Sequence[str] | None = None, mode: hybrid.Mode = "vector",
               fusion: Fusion | None = None) -> list[list[Hit]]:
        """Nearest items of `modality` (the modality of the RESULTS) for each unit query row,
        best first. Filters, all of which must match: `labels` = {level_name: value},
        `where` = {metadata field: JSON scalar} (equality on top-level fields).
        `mode` hybrid or lexical (index.hybrid) needs each query row's `texts`; `fusion`
        overrides the generation's."""
        check_modality(modality)
        k = check_k(k)
        queries = self._check_unit(queries, "queries")
        wanted = check_where(where)
        if mode not in hybrid.MODES:
            raise ValueError(f"mode must be one of {hybrid.MODES}, got {mode!r}")
        if mode != "vector" and (texts is None or len(texts) != len(queries)):
            raise ValueError(f"mode {mode} needs the text of each query row")
        with self._lock:
            gen = self._gen
            self._catch_up(gen)
            if mode == "vector":
                return self._search(gen, queries, k, modality, labels, wanted)
            return self._hybrid(gen, queries, list(texts or ()), k, modality, labels, wanted,
                                mode, fusion)

    def similar(self, k: int, modality: str, *, item_id: int | None = None,
                key: str | None = None, labels: Mapping[str, str] | None = None,
                where: Mapping[str, Scalar] | None = None,
                mode: hybrid.Mode = "vector") -> list[Hit] | None:
        """Search `modality` with the stored vector of the item named by `item_id` or `key`
        (no encoder involved), and in mode hybrid or lexical with its words (its text, or an
        image's caption); the item itself is left out of its own results. None when there is
        no such item."""
        if (item_id is None) == (key is None):
            raise ValueError("name the item by exactly one of id and key")
        check_modality(modality)
        k = check_k(k)
        wanted = check_where(where)
        found = None if item_id is None else check_id(item_id)
        with self._lock:
            gen = self._gen
            self._catch_up(gen)
            with gen.meta.read():
                found = gen.meta.id_of_key(_check_key(key)) if key is not None else found
                record = None if found is None else gen.meta.get(found)
                if record is None:
                    return None
                _, vector = gen.meta.vectors([record.id], self.dim, record.modality)
            exclude = record.id if record.modality == modality else None
            if mode == "vector":
                return self._search(gen, vector, k, modality, labels, wanted, exclude)[0]
            hits = self._hybrid(gen, vector, [record.text or ""], k + 1, modality, labels,
                                wanted, mode, None)[0]
            return [hit for hit in hits if hit.id != exclude][:k]

    # -- generations and snapshots ------------------------------------------------------------
    def reload(self) -> bool:
        """Adopt the generation CURRENT names (after `xmr index build`). True when it changed.
        The new generation may hold another checkpoint: compare `checkpoint_id` after."""
        live = layout.current(self.root)
        if live is None or live == self._gen.path:
            return False
        fresh = open_generation(live, self._gpu, self._backend)
        with self._lock:
            old, self._gen = self._gen, fresh
        old.close()
        log.info("index now serves %s (checkpoint %s)", live.name, self.checkpoint_id)
        return True

    def follow(self) -> bool:
        """`reload` once a re-index, run by any process, has sealed the generation served (one
        SQLite read while it has not). True when the generation changed."""
        with self._lock:
            if self._gen.meta.sealed() is None:
                return False
        return self.reload()

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
    def _write(self, what: str, write: Callable[[Generation], T]) -> T:
        """Run `write` in one durable transaction on the live generation; when a re-index has
        sealed it meanwhile, move to the new one and run it there."""
        for _attempt in range(3):
            with self._lock:
                gen = self._gen
                try:
                    with self._writing(gen):
                        result = write(gen)
                except Sealed:
                    self.reload()
                    continue
                self._catch_up(gen)
                return result
        raise RuntimeError(f"index generation kept changing during {what}")

    @contextmanager
    def _writing(self, gen: Generation) -> Iterator[None]:
        """A write transaction on a generation that is still the live one: checked under the
        SQLite write lock, which the re-index job holds while it swaps CURRENT."""
        with gen.meta.write():
            if layout.current(self.root) != gen.path:
                raise Sealed(f"{gen.path.name} is no longer the live generation")
            yield

    def _search(self, gen: Generation, queries: np.ndarray, k: int, modality: str,
                labels: Mapping[str, str] | None, where: Mapping[str, str],
                exclude: int | None = None) -> list[list[Hit]]:
        """Filters become an allow-list of ids (exact, whatever the index type); `exclude`
        leaves one id out (of the allow-list, or of one extra result fetched)."""
        allow = None
        if labels or where:
            allow = gen.meta.ids_matching(modality, gen.manifest.label_filter(labels or {}), where)
            allow = allow[allow != exclude] if exclude is not None else allow
            if not len(allow):
                return [[] for _ in range(len(queries))]
        extra = int(exclude is not None and allow is None)
        scores, ids = gen.stores[modality].search(queries, k + extra, allow)
        records = gen.meta.get_many(sorted({int(i) for i in ids.ravel() if i >= 0}))
        return [[Hit(int(i), float(s), records[int(i)])
                 for s, i in zip(row_s, row_i, strict=True)
                 if i >= 0 and int(i) != exclude and int(i) in records][:k]
                for row_s, row_i in zip(scores, ids, strict=True)]

    def _hybrid(self, gen: Generation, queries: np.ndarray, texts: list[str], k: int,
                modality: str, labels: Mapping[str, str] | None, where: Mapping[str, str],
                mode: hybrid.Mode, fusion: Fusion | None) -> list[list[Hit]]:
        """index.hybrid's search, its filters resolved as _search's."""
        levels = gen.manifest.label_filter(labels or {})
        allow = gen.meta.ids_matching(modality, levels, where) if labels or where else None
        if allow is not None and not len(allow):
            return [[] for _ in range(len(queries))]
        return hybrid.search(gen, queries, texts, k, modality, allow, mode, fusion or self.fusion)

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


def _check_key(key: str | None) -> str:
    checked = check_key(key)
    if checked is None:
        raise ValueError("key must be a string, not None")
    return checked
