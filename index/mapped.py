"""`MappedStore`: a FAISS snapshot memory-mapped read-only, with the writes made since in memory.

Several server processes open one generation; each maps the same snapshot file, so the
operating system keeps one copy of its vectors in the page cache for all of them instead of
one copy per process. A mapped FAISS index must never change (FAISS aborts the process when a
mapped array is resized), so writes go beside it:

- `delta`, an in-memory exact (Flat) store, holds every vector added since the snapshot;
- the base's tombstones hide the base ids that were removed or replaced since.

A search asks both and keeps the best k; `save` writes base and delta merged as one index of
the snapshot's type, and `rebase` maps that newer snapshot and empties the delta, so the
memory a process holds of its own stays bounded by the writes between snapshots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.store import FaissStore, SearchKnob, check_additions, check_ids

READ_MAPPED = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY


class MappedStore:
    """A `VectorStore` over a mapped snapshot (see the module docstring)."""

    def __init__(self, base: FaissStore) -> None:
        self.base = base
        self.dim = base.dim
        self.spec = base.spec
        self._base_ids = _stored_ids(base.index)
        self.delta = FaissStore.create(self.dim, "Flat")

    @classmethod
    def load(cls, directory: Path) -> MappedStore:
        return cls(FaissStore.load(directory, flags=READ_MAPPED))

    def rebase(self, directory: Path) -> bool:
        """Map the snapshot in `directory` (one that holds exactly what this store holds now)
        and empty the delta. False, and nothing changes, when it cannot be read (another
        process pruned it meanwhile) or does not hold what this store holds."""
        try:
            fresh = MappedStore.load(directory)
        except (OSError, RuntimeError):
            return False
        if fresh.count() != self.count():
            return False
        self.base, self._base_ids, self.delta = fresh.base, fresh._base_ids, fresh.delta
        return True

    # -- what only the base knows -------------------------------------------------------------
    def knob(self) -> SearchKnob | None:
        return self.base.knob()

    def set_knob(self, value: int) -> None:
        self.base.set_knob(value)

    def train(self, vectors: np.ndarray) -> None:
        """Nothing to learn: a snapshot's index is trained."""

    # -- writes, beside the base ----------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = check_additions(ids, vectors, self.dim)
        self._hide(ids)
        self.delta.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> int:
        ids = check_ids(ids)
        return self._hide(ids) + self.delta.remove(ids)

    def reset(self) -> None:
        """Empty, keeping what the base learnt: an in-memory copy of it, emptied."""
        empty = _owned_copy(self.base)
        empty.reset()
        self.base, self._base_ids = empty, np.empty(0, dtype=np.int64)
        self.delta.reset()

    def _hide(self, ids: np.ndarray) -> int:
        """Tombstone the ids the base holds and shows; how many there were."""
        held = ids[np.isin(ids, self._base_ids)].tolist()
        shown = [i for i in held if i not in self.base.tombstones]
        self.base.tombstones.update(shown)
        return len(shown)

    # -- reads --------------------------------------------------------------------------------
    def count(self) -> int:
        return self.base.count() + self.delta.count()

    def ids(self) -> np.ndarray:
        """Every id a search can return, sorted."""
        hidden = np.array(sorted(self.base.tombstones), dtype=np.int64)
        shown = np.setdiff1d(self._base_ids, hidden)
        return np.union1d(shown, _stored_ids(self.delta.index))

    def search(self, queries: np.ndarray, k: int,
               allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.base.search(queries, k, allow)
        if not self.delta.count():
            return scores, ids
        more_scores, more_ids = self.delta.search(queries, k, allow)
        scores = np.concatenate([scores, more_scores], axis=1)
        ids = np.concatenate([ids, more_ids], axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, 1), np.take_along_axis(ids, best, 1)

    # -- files --------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Base and delta merged, as one index of the base's type."""
        merged = _owned_copy(self.base)
        merged.remove(np.array(sorted(self.base.tombstones), dtype=np.int64))
        merged.add(_stored_ids(self.delta.index), _vectors(self.delta))
        merged.save(directory)

    def close(self) -> None:
        """Nothing to release: the mapping ends with the last reference to the base."""

    @property
    def on_gpu(self) -> bool:
        return False


def _owned_copy(store: FaissStore) -> FaissStore:
    """An in-memory copy of the index that may change, without tombstones (a copy of a mapped
    index stays mapped, so it goes through FAISS's serialised form)."""
    index = faiss.deserialize_index(faiss.serialize_index(store.index))
    return FaissStore(index, store.spec, store.dim, nprobe=store.nprobe,
                      ef_search=store.ef_search)


def _stored_ids(index: Any) -> np.ndarray:
    """Every id an id-mapped (Flat, HNSW) or IVF index holds, tombstoned ones included."""
    if hasattr(index, "id_map"):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    lists: Any = faiss.extract_index_ivf(index).invlists
    found = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
             for i in range(lists.nlist) if lists.list_size(i)]
    return np.concatenate(found).astype(np.int64) if found else np.empty(0, dtype=np.int64)


def _vectors(store: FaissStore) -> np.ndarray:
    """The rows of an id-mapped Flat store, in the order of its ids."""
    n = int(store.index.ntotal)
    return store.index.index.reconstruct_n(0, n) if n else np.empty((0, store.dim), np.float32)
