"""Past one machine: the Ray engine against the local engine, FAISS against Milvus.

1. Embedding engines, side by side in one process on the same payloads and checkpoint, end to
   end (loading the encoder; for Ray also `ray.init`, reported alone too, the actors and the
   shutdown; medians over the repeats), their outputs compared element by element:
   - OpenMoji: every item's text and image, backbone features from the feature cache, through
     the checkpoint's heads: the fixed-cost (start-up dominated) end of the range;
   - synthetic, 100k: noisy draws of the OpenMoji texts' MiniLM vectors (`synthetic_features`)
     through the text head alone: what the engines cost per row at scale;
   - synthetic texts, 10k: seeded unique captions, MiniLM + head for each: the compute-bound end.
   Local: one process, torch's default threads; Ray: 2 encoder actors (`map_batches`, 1 CPU and
   1 torch thread each).
2. Search parity on the vectors the engines computed: recall@10 of the FAISS store and the
   Milvus store (milvus-lite, a local server process: its seconds include the RPCs) against
   exact search (`recall_at_k`), exact and with the same IVF and HNSW settings on each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import K, arguments, bars, command, machine, publish, pyplot, timed
from bench.report import render
from index.engines import LocalEngine, embed_rows
from index.ray_engine import RayEngine
from index.store import FaissStore, auto_spec
from models.backbones.cache import FeatureCache
from models.backbones.extract import text_features
from models.backbones.text import MAX_TOKENS, MiniLM, TextFeatures
from models.data.corpus import read_corpus
from models.embedder import EncoderSpec
from models.inference import Encoder


# -- corpora ---------------------------------------------------------------------------------
def openmoji_rows(data: Path) -> tuple[list[str], list[str]]:
    corpus = read_corpus(data)
    return (["text"] * len(corpus.items) + ["image"] * len(corpus.items),
            [i.text for i in corpus.items] + [str(corpus.image_path(i)) for i in corpus.items])


def synthetic_features(data: Path, cache: Path, n: int, out: Path, seed: int = 0) -> Path:
    """n synthetic MiniLM sentence vectors: the OpenMoji texts' real ones (from the feature
    cache), each drawn at random plus 5% Gaussian noise, renormalised. Saved as .npy."""
    texts = [i.text for i in read_corpus(data).items]
    real = text_features(texts, MiniLM(), FeatureCache(cache), progress=False).pooled
    rng = np.random.default_rng(seed)
    rows = real[rng.integers(0, len(real), n)]
    rows = rows + 0.05 * rng.standard_normal(rows.shape).astype(np.float32) / np.sqrt(rows.shape[1])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    np.save(out, rows.astype(np.float32))
    return out


@dataclass(frozen=True)
class FeatureSpec:
    """Embedder over precomputed backbone features: payload = a row of `features`. The
    checkpoint's text head runs on them (sentence vector, and it as the only token)."""

    checkpoint: Path
    features: Path

    def build(self, device: str = "cpu", threads: int | None = None) -> FeatureEmbedder:
        return FeatureEmbedder(self, device, threads)


class FeatureEmbedder:
    def __init__(self, spec: FeatureSpec, device: str, threads: int | None) -> None:
        self.encoder = Encoder.load(spec.checkpoint, device, threads)
        self.features = np.load(spec.features, mmap_mode="r")
        self.dim = self.encoder.dim

    def embed(self, modality: str, payloads: Sequence[str]) -> np.ndarray:
        pooled = np.ascontiguousarray(self.features[np.asarray(payloads, dtype=np.int64)])
        tokens = np.zeros((len(pooled), MAX_TOKENS, pooled.shape[1]), np.float32)
        tokens[:, 0] = pooled
        mask = np.tile(np.arange(MAX_TOKENS) == 0, (len(pooled), 1))  # the one token
        return self.encoder.embed_text_features(TextFeatures(pooled, tokens, mask))


def synthetic_texts(data: Path, n: int, seed: int = 0) -> list[str]:
    words = sorted({w.lower() for i in read_corpus(data).items for w in i.text.split()})
    rng = np.random.default_rng(seed)
    texts: dict[str, None] = {}  # unique, in the order drawn
    while len(texts) < n:
        texts[" ".join(rng.choice(words, size=int(rng.integers(3, 7))))] = None
    return list(texts)


# -- engines ---------------------------------------------------------------------------------
def time_ray(spec: EncoderSpec, modalities: list[str], payloads: list[str],
             dim: int) -> tuple[float, float, np.ndarray]:
    import ray

    from index.ray_engine import _init_ray

    start = time.perf_counter()
    _init_ray(None)
    started = time.perf_counter()
    try:
        out = embed_rows(RayEngine(spec, workers=2), modalities, payloads, dim)
    finally:
        ray.shutdown()
    return time.perf_counter() - start, started - start, out


def compare_engines(name: str, spec: EncoderSpec, modalities: list[str], payloads: list[str],
                    dim: int, repeats: int) -> tuple[dict, np.ndarray]:
    local_s, ray_s, init_s = [], [], []
    local = ray_out = np.zeros(0)
    for r in range(repeats):
        seconds, local = timed(embed_rows, LocalEngine(spec), modalities, payloads, dim)
        ray_seconds, init, ray_out = time_ray(spec, modalities, payloads, dim)
        local_s.append(seconds), ray_s.append(ray_seconds), init_s.append(init)
        print(f"{name} repeat {r}: local {local_s[-1]:.1f}s ray {ray_s[-1]:.1f}s "
              f"(ray.init {init:.1f}s)", flush=True)
    n = len(payloads)
    lm, rm = statistics.median(local_s), statistics.median(ray_s)
    return {
        "rows": n, "repeats": repeats, "local_seconds": lm, "ray_seconds": rm,
        "ray_init_seconds": statistics.median(init_s), "local_rows_per_s": n / lm,
        "ray_rows_per_s": n / rm, "throughput_ratio_ray_over_local": lm / rm,
        "max_abs_diff": float(np.abs(local - ray_out).max()),
        "rows_equal_within_1e-5": bool(np.allclose(local, ray_out, atol=1e-5, rtol=0)),
        "all_seconds": {"local": local_s, "ray": ray_s, "ray_init": init_s}}, local


# -- search parity ---------------------------------------------------------------------------
TIE = 1e-5  # near-duplicate captions tie: returning either is no miss


def recall_at_k(found: np.ndarray, scores: np.ndarray, ids: np.ndarray) -> float:
    """found: the ids each query got; scores: each query's exact score of every row. A hit is
    any id whose exact score ties (within TIE) or beats the query's K-th best."""
    kth = -np.sort(-scores, axis=1)[:, K - 1]
    row_of = {int(i): r for r, i in enumerate(ids)}
    hits = sum(1 for q, row in enumerate(found) for i in row
               if i >= 0 and scores[q, row_of[int(i)]] >= kth[q] - TIE)
    return hits / (len(found) * K)


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
    scores = queries.astype(np.float64) @ base.astype(np.float64).T
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
        recall = recall_at_k(found, scores, ids)
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


# -- report and run --------------------------------------------------------------------------
def markdown(result: dict) -> str:
    """The tables; `notes` in the result, written after a run, closes the report."""
    return render("scale", **{"command": None, "search_command": None, "machine": None,
                              "notes": "", **result})


def figure(result: dict) -> Any:
    """Rows/s of each engine per corpus, and recall@10 of each search configuration."""
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4))
    engines = result["engines"]
    bars(left, [n.replace(" (", "\n(") for n in engines], {label: [e[key] for e in engines.values()]
         for key, label in (("local_rows_per_s", "local"), ("ray_rows_per_s", "Ray, 2 workers"))},
         ticks={"fontsize": 7}, yscale="log", ylabel="rows / s, end to end (log)",
         title="embedding engines")
    recall = {f"{name}: {label}": c["recall_at_10"]
              for name, s in result["search"].items() for label, c in s["configs"].items()}
    if recall:  # else the search stage has not run yet
        bars(right, list(recall), {"recall@10": list(recall.values())}, horizontal=True,
             ticks={"fontsize": 7}, xlim=(min(0.8, min(recall.values()) - 0.02), 1.0),
             xlabel="recall@10 vs exact")
    return fig


def main() -> None:
    parser = arguments(__doc__, "checkpoint", "data", "cache", work="scale-bench",
                       synthetic=100_000, repeats=3, synthetic_repeats=1, synthetic_texts=(
                           10_000, "synthetic captions through the full encoder (MiniLM + head)"))
    parser.add_argument("--stage", default="all", choices=("all", "engines", "search"),
                        help="engines: time the engines and keep their vectors in --work; "
                             "search: search parity on the kept vectors (merged into the json)")
    args = parser.parse_args()
    publish(args, "scale", lambda: run(args), markdown, figure)


def run(args: argparse.Namespace) -> dict:
    """The stages `--stage` names, merged into the last results."""
    run_command = command("bench.scale_bench")
    args.work.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "scale.json"
    result: dict = {"engines": {}, "search": {}}
    result |= json.loads(json_path.read_text()) if json_path.exists() else {}
    if args.stage in ("all", "engines"):
        result |= {"command": run_command, "machine": f"{machine()}, Ray with 2 workers",
                   "engines": run_engines(args)}
    if args.stage in ("all", "search"):
        result |= {"search_command": run_command, "search": run_search(args.work, args.synthetic)}
    return result


def run_engines(args: argparse.Namespace) -> dict:
    engines = {}
    cached = EncoderSpec(args.checkpoint, args.cache)
    dim = cached.build().dim
    modalities, payloads = openmoji_rows(args.data)
    engines["openmoji (cached features)"], vectors = compare_engines(
        "openmoji", cached, modalities, payloads, dim, args.repeats)
    np.save(args.work / "openmoji.npy", vectors)
    if args.synthetic:
        features = synthetic_features(args.data, args.cache, args.synthetic,
                                      args.work / "synthetic-features.npy")
        label = f"synthetic {args.synthetic // 1000}k (precomputed features)"
        engines[label], vectors = compare_engines(
            "synthetic", FeatureSpec(args.checkpoint, features), ["text"] * args.synthetic,
            [str(i) for i in range(args.synthetic)], dim, args.repeats)
        np.save(args.work / "synthetic.npy", vectors)
    if args.synthetic_texts:
        synthetic = synthetic_texts(args.data, args.synthetic_texts)
        label = f"synthetic {args.synthetic_texts // 1000}k texts (MiniLM, no cache)"
        engines[label], _ = compare_engines(
            "synthetic texts", EncoderSpec(args.checkpoint, None), ["text"] * len(synthetic),
            synthetic, dim, args.synthetic_repeats)
    return engines


if __name__ == "__main__":
    main()
