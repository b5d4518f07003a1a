"""Vector stores: explicit int64 ids in, (scores, ids) out; cosine as inner product on unit rows.

`VectorStore` is the small protocol the catalog codes against (a Milvus store can stand behind
it); `FaissStore` is the FAISS implementation. Ids are always the caller's int64 ids, never row
positions. Index types come from FAISS factory strings ("Flat", "IVF4096,Flat", "HNSW32",
"IVF4096,PQ32"), or "auto", which picks one from the corpus size (`auto_spec`).

Removal: Flat (through IndexIDMap2) and IVF indexes remove ids in place. HNSW cannot, so removed
ids become tombstones that every search excludes (an IDSelector on the CPU), and an upsert of a
present id compacts the graph; index.mapped hides the ids of a mapped file this way.
`gpu=True`: searches run on a GPU copy of the CPU index, which stays the master (index.gpu).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import faiss
import numpy as np

from index.gpu import GPU_MAX_K, GPU_RECLONE_SHARE, GpuMirror, try_mirror

DEFAULT_NPROBE = 16
DEFAULT_EF_SEARCH = 128
MIN_EF_SEARCH = 10  # efSearch below the k of a recall@10 cannot return 10 neighbours
MAX_EF_SEARCH = 4096  # beyond this HNSW costs more than a scan of a fair share of the base


@dataclass(frozen=True)
class SearchKnob:
    """The search parameter that trades recall for speed (IVF nprobe, HNSW efSearch): its name,
    the value searches use now, and the range worth trying (index.tuning)."""

    name: str
    value: int
    low: int
    high: int


@runtime_checkable
class VectorStore(Protocol):
    """What the catalog and the re-index job need from a vector index. Rows are unit float32
    (n, dim)."""

    dim: int
    spec: str  # the index type, as the manifest records it

    def train(self, vectors: np.ndarray) -> None:
        """Learn what the index type learns from data (IVF centroids) from a sample of
        `vectors`; nothing for the types that learn nothing."""

    def knob(self) -> SearchKnob | None:
        """The store's search parameter; None where there is none to set (exact search, or a
        backend that chooses its own)."""

    def set_knob(self, value: int) -> None: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Upsert: an id already present is replaced."""

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ones are ignored); returns how many were present."""

    def search(
        self, queries: np.ndarray, k: int, allow: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (n, k), ids int64 (n, k)) best first, padded with -inf / -1.
        `allow`: only these ids may be returned (a label filter resolved to ids)."""

    def count(self) -> int: ...

    def save(self, directory: Path) -> None: ...

    def reset(self) -> None:
        """Empty the store, keeping what it learnt (IVF centroids), for a rebuild."""

    def close(self) -> None:
        """Release what the store holds open (a connection, a file lock)."""


def set_search_threads(threads: int) -> None:
    """FAISS's OpenMP threads for searches started from the calling thread."""
    faiss.omp_set_num_threads(threads)


def auto_spec(n: int, dim: int) -> str:
    """Exact search while it is cheap; IVF (nlist ~ 4 sqrt(n)) up to a few million rows, where
    its full vectors still fit in a few GB; product quantisation beyond."""
    if n < 20_000:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    nlist = int(min(max(nlist, 256), 65_536))
    if n <= 4_000_000:
        return f"IVF{nlist},Flat"
    m = max(m for m in (8, 16, 32, 64) if dim % m == 0)
    return f"IVF{nlist},PQ{m}"


def check_vectors(vectors: np.ndarray, dim: int, what: str = "vectors") -> np.ndarray:
    """The public-boundary check: float (n, dim), finite. Returns C-contiguous float32."""
    if not isinstance(vectors, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, not {type(vectors).__name__}")
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {vectors.shape}")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise TypeError(f"{what} must be floating point, got {vectors.dtype}")
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return out


def check_ids(ids: np.ndarray | list[int]) -> np.ndarray:
    out = np.ascontiguousarray(np.asarray(ids), dtype=np.int64)
    if out.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {out.shape}")
    if (out < 0).any():
        raise ValueError("ids must be non-negative int64")
    return out


def check_additions(ids: np.ndarray | list[int], vectors: np.ndarray,
                    dim: int) -> tuple[np.ndarray, np.ndarray]:
    """What every store's add() accepts: one unique non-negative id per finite dim-d row."""
    ids = check_ids(ids)
    vectors = check_vectors(vectors, dim)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("duplicate ids in one add")
    return ids, vectors


class FaissStore:
    """An id-mapped FAISS index (see module docstring)."""

    def __init__(self, index: Any, spec: str, dim: int, *, tombstones: np.ndarray | None = None,
                 nprobe: int = DEFAULT_NPROBE, ef_search: int = DEFAULT_EF_SEARCH,
                 gpu: bool = False) -> None:
        self.index = index
        self.spec = spec
        self.dim = dim
        self.tombstones: set[int] = set() if tombstones is None else set(tombstones.tolist())
        self._excluded: tuple[set[int], int, np.ndarray, Any, Any] | None = None  # _exclusion
        self.nprobe = nprobe
        self.ef_search = ef_search
        self._gpu: GpuMirror | None = None
        if gpu:
            self._gpu = try_mirror(index, spec)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, dim: int, spec: str = "Flat", *, n_hint: int = 0, **kwargs: Any) -> FaissStore:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if spec == "auto":
            spec = auto_spec(n_hint, dim)
        factory = spec if spec.startswith("IVF") else f"IDMap2,{spec}"
        try:
            index: Any = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as err:
            raise ValueError(f"not a FAISS index type: {spec!r} ({err})") from err
        if spec.startswith("HNSW"):
            _hnsw(index).efConstruction = 80
        return cls(index, spec, dim, **kwargs)

    @classmethod
    def load(cls, directory: Path, gpu: bool = False, flags: int = 0) -> FaissStore:
        """`flags`: FAISS's read flags (index.mapped maps the file read-only)."""
        meta = json.loads((directory / "store.json").read_text())
        index = faiss.read_index(str(directory / "index.faiss"), flags)
        tombstones = np.load(directory / "tombstones.npy")
        return cls(index, meta["spec"], meta["dim"], tombstones=tombstones,
                   nprobe=meta["nprobe"], ef_search=meta["ef_search"], gpu=gpu)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / "index.faiss"))
        np.save(directory / "tombstones.npy", np.array(sorted(self.tombstones), dtype=np.int64))
        meta = {"spec": self.spec, "dim": self.dim, "nprobe": self.nprobe,
                "ef_search": self.ef_search}
        (directory / "store.json").write_text(json.dumps(meta))

    @property
    def on_gpu(self) -> bool:
        return self._gpu is not None

    @property
    def removes_in_place(self) -> bool:
        return not self.spec.startswith("HNSW")

    # -- training -----------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, vectors: np.ndarray, max_points: int | None = None, seed: int = 0) -> None:
        """Train IVF/PQ centroids on a subsample (k-means cost grows with the sample; 40 points
        per list is what FAISS asks for). An index that learns nothing (Flat, HNSW) is left
        as it is."""
        if self.is_trained:
            return
        vectors = check_vectors(vectors, self.dim)
        ivf = faiss.extract_index_ivf(self.index) if self.spec.startswith("IVF") else None
        if ivf is not None:
            limit = max_points or 40 * ivf.nlist
            if len(vectors) > limit:
                rows = np.random.default_rng(seed).choice(len(vectors), limit, replace=False)
                vectors = vectors[np.sort(rows)]
            ivf.cp.niter = 10
        self.index.train(vectors)
        if self._gpu is not None:
            self._gpu.reclone(self.index)

    # -- the search parameter -----------------------------------------------------------------
    def knob(self) -> SearchKnob | None:
        if self.spec.startswith("IVF"):
            nlist = int(faiss.extract_index_ivf(self.index).nlist)
            return SearchKnob("nprobe", self.nprobe, 1, nlist)
        if self.spec.startswith("HNSW"):
            return SearchKnob("ef_search", self.ef_search, MIN_EF_SEARCH, MAX_EF_SEARCH)
        return None

    def set_knob(self, value: int) -> None:
        if self.spec.startswith("IVF"):
            self.nprobe = int(value)
        elif self.spec.startswith("HNSW"):
            self.ef_search = int(value)
        else:
            raise ValueError(f"index {self.spec!r} has no search parameter")

    # -- mutation -----------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = check_additions(ids, vectors, self.dim)
        if not len(ids):
            return
        if not self.is_trained:
            raise ValueError(f"index {self.spec!r} must be trained before adding vectors")
        if self.removes_in_place:
            replaced = self.index.remove_ids(faiss.IDSelectorBatch(ids))
        else:
            replaced = self._compact_without(ids)
        self.index.add_with_ids(vectors, ids)
        if self._gpu is not None:
            if replaced:
                self._gpu.reclone(self.index)
            else:
                self._gpu.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = check_ids(ids)
        if not len(ids):
            return 0
        if self.removes_in_place:
            removed = int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
            present = ids  # the GPU copy ignores tombstones of ids it never had
        else:
            present = np.intersect1d(self._stored_ids(), ids)
            present = present[~np.isin(present, list(self.tombstones))]
            self.tombstones.update(present.tolist())
            removed = len(present)
        if self._gpu is not None and removed:
            self._gpu.tombstones.update(present.tolist())
            if len(self._gpu.tombstones) > GPU_RECLONE_SHARE * max(self.count(), 1):
                self._gpu.reclone(self.index)
        return removed

    def count(self) -> int:
        return int(self.index.ntotal) - len(self.tombstones)

    def reset(self) -> None:
        self.index.reset()
        self.tombstones = set()
        if self._gpu is not None:
            self._gpu.reclone(self.index)

    def close(self) -> None:
        """Nothing to release: the index lives in this process's memory."""

    def _stored_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def _compact_without(self, ids: np.ndarray) -> int:
        """Rebuild a tombstone-type index without `ids` and without its tombstones."""
        stored = self._stored_ids()
        drop = np.isin(stored, ids)
        if not drop.any():
            return 0
        keep = ~drop & ~np.isin(stored, list(self.tombstones))
        vectors = self.index.index.reconstruct_n(0, len(stored))[keep]
        fresh = FaissStore.create(self.dim, self.spec, gpu=False)
        fresh.index.add_with_ids(vectors, stored[keep])
        self.index = fresh.index
        self.tombstones = set()
        return int(drop.sum())

    # -- search -------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int,
               allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = check_vectors(queries, self.dim, "queries")
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if allow is None and self._gpu is not None:
            found = self._search_gpu(queries, k)
            if found is not None:
                return found
        return self._search_cpu(queries, k, allow)

    def _params(self, selector: Any) -> Any:
        params: Any
        if self.spec.startswith("IVF"):
            params = faiss.SearchParametersIVF()
            params.nprobe = self.nprobe
        elif self.spec.startswith("HNSW"):
            params = getattr(faiss, "SearchParametersHNSW")()  # noqa: B009 (no stub)
            params.efSearch = max(self.ef_search, 1)
        else:
            params = faiss.SearchParameters()
        params.sel = selector
        return params

    def _search_cpu(
        self, queries: np.ndarray, k: int, allow: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        tomb, selector = self._exclusion()
        if allow is not None:
            allow = check_ids(allow)
            if len(tomb):
                allow = np.setdiff1d(allow, tomb)
            if not len(allow):
                return _empty(len(queries), k)
            selector = faiss.IDSelectorBatch(allow)
        self._set_search_knobs(self.index)
        if selector is None:
            scores, ids = self.index.search(queries, k)
        else:
            scores, ids = self.index.search(queries, k, params=self._params(selector))
        return _clean(scores, ids)

    def _search_gpu(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        assert self._gpu is not None
        fetch = k + len(self._gpu.tombstones)
        if fetch > GPU_MAX_K:
            return None
        self._set_search_knobs(self._gpu.index)
        scores, ids = self._gpu.index.search(queries, fetch)
        scores, ids = _clean(scores, ids)
        if self._gpu.tombstones:
            dead = np.isin(ids, list(self._gpu.tombstones))
            scores, ids = _compact_rows(scores, ids, ~dead, k)
        return scores[:, :k], ids[:, :k]

    def _exclusion(self) -> tuple[np.ndarray, Any]:
        """The tombstones, sorted, and a selector of every id but them (None without any), made
        again only when they change: the set only grows, and is replaced when emptied."""
        found = self._excluded
        if found is None or found[0] is not self.tombstones or found[1] != len(self.tombstones):
            tomb = np.array(sorted(self.tombstones), dtype=np.int64)
            inner = faiss.IDSelectorBatch(tomb) if len(tomb) else None
            selector = None if inner is None else faiss.IDSelectorNot(inner)
            # `inner` is kept with the selector: the C++ object must outlive it
            found = self._excluded = (self.tombstones, len(tomb), tomb, selector, inner)
        return found[2], found[3]

    def _set_search_knobs(self, index: Any) -> None:
        if self.spec.startswith("IVF"):
            faiss.extract_index_ivf(index).nprobe = self.nprobe
        elif self.spec.startswith("HNSW"):
            _hnsw(index).efSearch = self.ef_search


def _hnsw(index: Any) -> Any:
    """The HNSW graph object inside an IndexIDMap2."""
    inner: Any = faiss.downcast_index(index.index)
    return inner.hnsw


def _empty(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)


def _clean(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = scores.astype(np.float32, copy=True)
    scores[ids < 0] = -np.inf
    return scores, ids.astype(np.int64, copy=False)


def _compact_rows(
    scores: np.ndarray, ids: np.ndarray, keep: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    out_s, out_i = _empty(len(ids), k)
    for row in range(len(ids)):
        s, i = scores[row][keep[row]][:k], ids[row][keep[row]][:k]
        out_s[row, : len(s)], out_i[row, : len(i)] = s, i
    return out_s, out_i
