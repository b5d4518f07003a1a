"""The search parameter of an approximate index (IVF nprobe, HNSW efSearch), tuned to a recall
target on queries of the other modality.

A service searches its image index with text vectors and its text index with image vectors,
and those come from another distribution than the base: a default tuned on the base's own
distribution finds far fewer true neighbours for them. So `xmr index build` measures recall@10
of each index on a sample of the other modality's vectors of the same corpus (the exact top 10
over the same base is the truth) and keeps the smallest value that reaches the target: doubling
from the cheapest value, then bisecting between the last miss and the first hit (recall grows
with either parameter). Flat is exact and needs none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import faiss
import numpy as np

from index.store import VectorStore

K = 10
DEFAULT_TARGET = 0.95  # recall@10
MAX_QUERIES = 1000
OTHER = {"image": "text", "text": "image", "caption": "text"}  # who queries each store
NONE_TO_TUNE = "exact search, or a backend that sets its own search parameter"


@dataclass(frozen=True)
class Tuning:
    """What one index's manifest entry records (index.manifest.Manifest.search)."""

    index: str  # the FAISS factory string
    param: str | None = None  # "nprobe", "ef_search"; None: none to tune
    value: int | None = None  # the value the store searches with
    recall_at_10: float | None = None  # measured with `value` on the queries
    target: float | None = None
    queries: int = 0
    query_modality: str | None = None  # "text" for the image index, and the other way round
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def exact_neighbours(ids: np.ndarray, base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The ids of each query's k nearest base rows by inner product (brute force)."""
    _, rows = faiss.knn(queries, base, k, faiss.METRIC_INNER_PRODUCT)
    return ids[rows]


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true neighbours found (both (n, k) id arrays)."""
    hits = [len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / truth.shape[1]


def tune(store: VectorStore, ids: np.ndarray, base: np.ndarray, queries: np.ndarray,
         target: float, query_modality: str | None = None) -> Tuning:
    """Set the store's search parameter to the smallest value whose recall@10 on `queries`
    (against exact search over `base`, the vectors the store holds under `ids`) reaches
    `target`, or to the largest value tried when none does (the note says so)."""
    found = store.knob()
    if found is None:
        return Tuning(store.spec, note=NONE_TO_TUNE)
    param, low, high = found.name, found.low, found.high
    k = min(K, len(ids))
    truth = exact_neighbours(ids, base, queries, k)

    def recall(value: int) -> float:
        store.set_knob(value)
        return recall_at(store.search(queries, k)[1], truth)

    value = low
    measured = {value: recall(value)}
    while measured[value] < target and value < high:
        value = min(2 * value, high)
        measured[value] = recall(value)
    if measured[value] >= target:
        miss = max((v for v, r in measured.items() if r < target), default=None)
        while miss is not None and value - miss > 1:
            mid = (miss + value) // 2
            measured[mid] = recall(mid)
            miss, value = (miss, mid) if measured[mid] >= target else (mid, value)
    store.set_knob(value)
    note = "" if measured[value] >= target else f"target not reached at the largest {param}"
    return Tuning(store.spec, param, value, round(measured[value], 4), target, len(queries),
                  query_modality, note)


def tune_other_modality(store: VectorStore, modality: str, vectors: dict[str, tuple[np.ndarray,
                        np.ndarray]], target: float) -> Tuning:
    """Tune the `modality` store (holding `vectors[modality]` = (ids, rows)) on a sample of the
    other modality's rows; with none (a one-modality corpus) its default value stays."""
    other = OTHER[modality]
    ids, base = vectors[modality]
    queries = sample(vectors[other][1])
    found = store.knob()
    if found is not None and not (len(queries) and len(ids)):
        return Tuning(store.spec, found.name, found.value, target=target,
                      note=f"not tuned: no {other if len(ids) else modality} vectors; "
                           "the default kept")
    return tune(store, ids, base, queries, target, other)


def sample(vectors: np.ndarray, n: int = MAX_QUERIES, seed: int = 0) -> np.ndarray:
    """Up to n rows, drawn without replacement (seeded: a rebuild tunes on the same sample)."""
    if len(vectors) <= n:
        return vectors
    rows = np.random.default_rng(seed).choice(len(vectors), n, replace=False)
    return vectors[np.sort(rows)]
