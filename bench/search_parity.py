"""Search parity, part 2 of bench.scale_bench: on the vectors its engines computed (OpenMoji
images as the database and texts as queries; the synthetic vectors split into database and
queries), recall@10 of the FAISS store and the Milvus store (milvus-lite) against exact search
(numpy, float64). A returned id counts as a hit when its exact score is within 1e-5 of the 10th
exact score (ties between near-duplicate captions are not misses). Default configurations of
each (exact FLAT), and the same approximate index types on each (IVF with the nlist
`--index-type auto` picks for that size, nprobe 16; HNSW M 32, ef 128: the FAISS store's
defaults), with build + search seconds (milvus-lite runs as a local server process, so its
seconds include the RPCs)."""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from bench.harness import K, timed
from index.store import FaissStore, auto_spec

TIE = 1e-5


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float64) @ base.astype(np.float64).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return top, scores


def recall_at_k(found: np.ndarray, exact: np.ndarray, scores: np.ndarray, ids: np.ndarray) -> float:
    """found holds ids; a hit is any id whose exact score ties or beats the k-th exact one."""
    row_of = {int(i): r for r, i in enumerate(ids)}
    total = 0
    for q in range(len(found)):
        kth = scores[q, exact[q, -1]]
        total += sum(1 for i in found[q] if i >= 0 and scores[q, row_of[int(i)]] >= kth - TIE)
    return total / (len(found) * exact.shape[1])


def faiss_search(spec: str, ids: np.ndarray, base: np.ndarray, queries: np.ndarray, k: int
                 ) -> np.ndarray:
    """The project's FAISS store (index.store.FaissStore), as `xmr index build` makes it."""
    store = FaissStore.create(base.shape[1], spec, n_hint=len(base), gpu=False)
    if not store.is_trained:
        store.train(base)
    store.add(ids, base)
    return store.search(queries, k)[1]


def milvus_search(kind: str, params: dict, ids: np.ndarray, base: np.ndarray,
                  queries: np.ndarray, k: int) -> np.ndarray:
    """The project's Milvus store (index.milvus_store.MilvusStore) on milvus-lite."""
    from index.milvus_store import MilvusStore

    with tempfile.TemporaryDirectory() as tmp:
        store = MilvusStore(Path(tmp) / "milvus.db", "bench", base.shape[1], index_type=kind,
                            index_params=params)
        store.add(ids, base)
        store.flush()
        found = np.concatenate([store.search(queries[s : s + 100], k)[1]
                                for s in range(0, len(queries), 100)])
        store.close()
    return found


def search_parity(name: str, base: np.ndarray, queries: np.ndarray) -> dict:
    ids = np.arange(len(base), dtype=np.int64) * 7 + 3  # ids are not row positions
    exact, scores = exact_topk(base, queries, K)
    result: dict = {"database": len(base), "queries": len(queries), "configs": {}}
    auto = auto_spec(len(base), base.shape[1])
    if auto.startswith("IVF"):
        nlist = int(auto[3:].split(",")[0])
    else:  # small: the same rule (about 4 sqrt(n) lists), without auto's floor of 256
        nlist = max(16, 2 ** round(np.log2(4 * np.sqrt(len(base)))))
    configs = {
        "FAISS Flat (exact)": partial(faiss_search, "Flat"),
        "Milvus FLAT (exact; default)": partial(milvus_search, "FLAT", {}),
        f"FAISS IVF{nlist},Flat nprobe 16": partial(faiss_search, f"IVF{nlist},Flat"),
        f"Milvus IVF_FLAT nlist {nlist} nprobe 16": partial(milvus_search, "IVF_FLAT",
                                                            {"nlist": nlist}),
        "FAISS HNSW32 efSearch 128": partial(faiss_search, "HNSW32"),
        "Milvus HNSW M 32 ef 128": partial(milvus_search, "HNSW", {"M": 32, "efConstruction": 80}),
    }
    result["faiss_auto_spec"] = auto
    for label, run in configs.items():
        seconds, found = timed(run, ids, base, queries, K)
        recall = recall_at_k(found, exact, scores, ids)
        result["configs"][label] = {"recall_at_10": recall, "seconds_build_and_search": seconds}
        print(f"{name} {label}: recall@10 {recall:.4f} ({seconds:.1f}s)", flush=True)
    return result


def run_search(work: Path, synthetic_rows: int) -> dict:
    """Search parity on the vectors the engines stage kept in `work`."""
    search = {}
    vectors = np.load(work / "openmoji.npy")
    half = len(vectors) // 2  # texts first, then their images
    search["openmoji text->image"] = search_parity("openmoji", vectors[half:], vectors[:half])
    synthetic = work / "synthetic.npy"
    if synthetic_rows and synthetic.exists():
        vectors = np.load(synthetic)
        rng = np.random.default_rng(1)
        queries = rng.choice(len(vectors), size=1000, replace=False)
        base = np.setdiff1d(np.arange(len(vectors)), queries)
        search[f"synthetic {len(vectors) // 1000}k"] = search_parity(
            "synthetic", vectors[base], vectors[queries])
    return search
