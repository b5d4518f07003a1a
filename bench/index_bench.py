"""Index benchmark: Flat vs IVF vs HNSW at 100k and 1M on two query sets (per-call timings are
medians).

- same-distribution: a seeded Gaussian mixture (d=256, thousands of centres: clustered like
  real embeddings), queries from the same mixture; each index's search parameter swept.
- cross-modal: text queries against an image base, as the service searches them
  (`cross_modal_data`); each index's parameter tuned by `xmr index build`'s own function
  (index.tuning) on one half of the queries and reported on the other.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from functools import partial
from itertools import product
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench.harness import arguments, command, machine, mixture, pyplot, timed, write_results
from bench.report import render
from index.store import FaissStore, _hnsw, auto_spec
from index.tuning import K, recall_at, tune

DIM = 256  # the synthetic mixture's
NPROBES = (1, 2, 4, 8, 16, 32, 64)
EF_SEARCH = (16, 32, 64, 128, 256)


# -- measuring one index -------------------------------------------------------------------------
def search_timings(store: FaissStore, queries: np.ndarray, size: int
                   ) -> tuple[float, float, float, np.ndarray]:
    """Queries/s, median and p99 ms per search call of `size` queries, and the ids found."""
    calls = [timed(store.search, queries[s:s + size], K) for s in range(0, len(queries), size)]
    t = np.array([seconds for seconds, _ in calls])
    return (len(queries) / t.sum(), 1e3 * float(np.median(t)), 1e3 * float(np.quantile(t, 0.99)),
            np.concatenate([ids for _, (_, ids) in calls]))


def measure(store: FaissStore, name: str, n: int, q_single: np.ndarray, q_batch: np.ndarray,
            truth: np.ndarray, build_s: float, memory_mb: float) -> dict:
    qps_b, p50_b, p99_b, found = search_timings(store, q_batch, 64)
    qps_s, p50_s, p99_s, _ = search_timings(store, q_single, 1)
    row = {"n": n, "index": name, "recall_at_10": round(recall_at(found, truth), 4),
           "qps_single": round(qps_s, 1), "p50_single_ms": round(p50_s, 3),
           "p99_single_ms": round(p99_s, 3), "qps_batch64": round(qps_b, 1),
           "p50_batch64_ms": round(p50_b, 3), "p99_batch64_ms": round(p99_b, 3),
           "build_s": round(build_s, 2), "memory_mb": round(memory_mb, 1)}
    print(json.dumps(row), flush=True)
    return row


def build_store(spec: str, data: np.ndarray, ids: np.ndarray, args: argparse.Namespace
                ) -> tuple[FaissStore, float, float]:
    gc.collect()
    faiss.omp_set_num_threads(args.build_threads)
    start = time.perf_counter()
    store = FaissStore.create(data.shape[1], spec, gpu=False)
    if spec.startswith("HNSW"):
        _hnsw(store.index).efConstruction = 40
    if not store.is_trained:
        store.train(data, max_points=min(len(data), 40 * int(spec[3:].split(",")[0])))
    store.add(ids, data)
    build_s = time.perf_counter() - start
    faiss.omp_set_num_threads(args.search_threads)
    memory = faiss.serialize_index(store.index).nbytes / 2**20
    print(f"  built {spec} in {build_s:.1f} s (serialised {memory:.0f} MB)", flush=True)
    if args.gpu:  # the service's placement: CPU master, searches on a GPU copy
        store = FaissStore(store.index, spec, data.shape[1], gpu=True)
        print(f"  {spec} searches on the GPU: {store.on_gpu}", flush=True)
    return store, build_s, memory


def bench_size(n: int, data: np.ndarray, queries: np.ndarray, args: argparse.Namespace,
               tune_on: np.ndarray | None = None) -> tuple[list[dict], np.ndarray]:
    """Flat, then the size's default IVF and HNSW: swept over their search parameter, or with
    it tuned on `tune_on` (queries kept apart from `queries`) as `xmr index build` does."""
    print(f"== n = {n}, d = {data.shape[1]}", flush=True)
    ids = np.arange(n, dtype=np.int64) * 3 + 1_000_000_007  # explicit ids, not positions
    q_single = queries[: args.single_queries]
    flat, build_s, mem = build_store("Flat", data, ids, args)
    seconds, (truth_scores, truth) = timed(flat.search, queries, K)
    print(f"  exact ground truth: {seconds:.1f} s", flush=True)
    runs = [measure(flat, "Flat", n, q_single[: args.flat_single_queries], queries, truth,
                    build_s, mem)]
    del flat  # build_store collects it before the next build
    families = [(auto_spec(n, data.shape[1]) if n >= 20_000 else "IVF256,Flat", "nprobe", NPROBES)]
    if n <= args.hnsw_max:
        families.append(("HNSW32", "efSearch", EF_SEARCH))
    for spec, label, values in families:
        store, build_s, mem = build_store(spec, data, ids, args)
        tuned = None if tune_on is None else tune(store, ids, data, tune_on, args.recall_target)
        for value in values if tuned is None else [tuned.value]:
            store.set_knob(value)
            runs.append(measure(store, f"{spec} {label}={value}", n, q_single, queries,
                                truth, build_s, mem))
            if tuned is not None:
                runs[-1]["tuned"] = {"recall_at_10": tuned.recall_at_10, "target": tuned.target,
                                     "queries": tuned.queries, "note": tuned.note}
        del store
    for row in runs:
        row["speedup_vs_flat"] = round(row["qps_single"] / runs[0]["qps_single"], 2)
    return runs, truth_scores


def cross_modal_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(image-side base of the largest size, text-side queries, the real images' vectors, the
    set's description). Each base row: the demo checkpoint's image head on (1 - a) x + a y +
    noise, x and y the pooled backbone features (feature cache) of two random OpenMoji images,
    a ~ U(0, mix), the noise Gaussian at `noise` x each feature's spread. Queries: the text side
    of every distinct OpenMoji name and CLDR keyword, shuffled (texts, so never in the base)."""
    from models.backbones.cache import FeatureCache
    from models.backbones.extract import image_features
    from models.backbones.image import ImageFeatures
    from models.data.corpus import read_corpus
    from models.data.keywords import read_keywords
    from models.inference import Encoder

    encoder = Encoder.load(args.checkpoint, "cpu")
    corpus = read_corpus(args.data)
    paths = sorted({corpus.image_path(i) for i in corpus.items})
    real = image_features(paths, encoder.backbones.image, FeatureCache(args.cache),
                          progress=False).pooled

    def head(feats: np.ndarray) -> np.ndarray:  # methods of pooled features only
        no_regions = np.zeros((len(feats), 0, feats.shape[1]), np.float16)
        return encoder.embed_image_features(ImageFeatures(feats, no_regions))

    rng = np.random.default_rng(0)
    base = np.empty((max(args.sizes), encoder.dim), np.float32)
    for start in range(0, len(base), 50_000):
        x, y = real[rng.integers(0, len(real), (2, min(50_000, len(base) - start)))]
        a = rng.uniform(0, args.mix, (len(x), 1)).astype(np.float32)
        noise = rng.standard_normal(x.shape, dtype=np.float32) * real.std(axis=0) * args.noise
        base[start:start + len(x)] = head((1 - a) * x + a * y + noise)
    words = {w for ws in (read_keywords(args.data) or {}).values() for w in ws}
    texts = sorted({i.text for i in corpus.items} | words)
    rng.shuffle(texts)
    queries = np.concatenate([encoder.encode_texts(texts[b:b + 256])
                              for b in range(0, len(texts), 256)])
    return base, queries, head(real), (
        f"base: {encoder.method_name} image head (d={encoder.dim}) on mixes of 2 of {len(real)} "
        f"OpenMoji image features, a ~ U(0, {args.mix}), noise {args.noise} x spread; queries: "
        f"{len(texts)} OpenMoji names and CLDR keywords, half to tune on, half to report")


# -- neighbour profile ---------------------------------------------------------------------------
def profile(vectors: np.ndarray) -> dict:
    """Cosine to the 1st and 10th nearest other vector, and between random pairs (medians)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    a, b = np.random.default_rng(0).integers(0, len(vectors), (2, 4000))
    keep = a != b
    pairs = np.sum(vectors[a[keep]] * vectors[b[keep]], axis=1)
    top = -np.sort(-sims, axis=1)[:, :min(K, len(vectors) - 1)]  # fewer than K others: all
    return neighbours(len(vectors), top, float(np.median(pairs)))


def neighbours(n: int, top: np.ndarray, random_pair: float) -> dict:
    """The profile of n vectors from rows of best-first neighbour cosines."""
    return {"n": n, "nn1_median": round(float(np.median(top[:, 0])), 4),
            "nn10_median": round(float(np.median(top[:, -1])), 4),
            "random_pair_median": round(random_pair, 4),
            "nn1": top[:, 0].tolist(), "nn10": top[:, -1].tolist()}


# -- report ------------------------------------------------------------------------------------
def figure(runs: list[dict], profiles: dict) -> Any:
    """Single-query QPS against recall per size, and the neighbour-cosine profiles."""
    sizes = sorted({r["n"] for r in runs})
    fig, axes = pyplot().subplots(1, len(sizes) + 1, figsize=(5.5 * (len(sizes) + 1), 4.5))
    for ax, n in zip(axes, sizes, strict=False):
        for (family, marker), (queries, fill) in product(
                (("IVF", "o-"), ("HNSW", "s-"), ("Flat", "k*")),
                (("same-distribution", "full"), ("cross-modal", "none"))):
            rows = [r for r in runs if r["n"] == n and r["index"].startswith(family)
                    and r["queries"] == queries]
            if rows:
                ax.plot([r["recall_at_10"] for r in rows], [r["qps_single"] for r in rows],
                        marker, fillstyle=fill, label=f"{rows[0]['index'].split(' ')[0]}, "
                        f"{queries}{' (tuned)' if 'tuned' in rows[-1] else ''}")
                for r in (r for r in rows if " " in r["index"]):
                    ax.annotate(r["index"].split("=")[1], (r["recall_at_10"], r["qps_single"]),
                                fontsize=7)
        ax.axvline(0.95, color="grey", ls=":")
        ax.set(yscale="log", xlabel="recall@10 vs exact Flat", ylabel="single-query QPS",
               title=f"n = {n:,}")
        ax.legend(fontsize=7)
    for name, prof in ((k, p) for k, p in profiles.items() if "nn1" in p):  # this run's
        axes[-1].hist(prof["nn1"], bins=40, histtype="step", density=True, label=f"{name} 1-NN")
    axes[-1].set(xlabel="cosine to nearest neighbour", title="neighbour profile")
    axes[-1].legend(fontsize=7)
    return fig


def markdown(doc: dict) -> str:
    return render("index", **doc)


SETS = ("same-distribution", "cross-modal")


def kept_results(path: Path, sets: list[str]) -> dict:
    """The results of the query sets not run now, from the last results."""
    if set(sets) == set(SETS) or not path.exists():
        return {}
    old = json.loads(path.read_text())
    old["runs"] = [r for r in old["runs"] if r["queries"] not in sets]
    old["profiles"] = {k: v for k, v in old["profiles"].items()
                       if SETS[k.startswith("cross-modal")] not in sets}
    return old


def main() -> None:
    parser = arguments(  # no --render-only: the plot needs the per-vector cosines of a run
        __doc__, "checkpoint", "data", "cache", renders=False, centres=4096, spread=0.6, offset=1.3,
        queries=1000, mix=0.5, noise=0.3, recall_target=0.95, build_threads=2,
        single_queries=500, flat_single_queries=200, hnsw_max=1_000_000,
        search_threads=(1, "FAISS OpenMP threads while searching (more spin-wait on shared cores)"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS),
                        help="query sets to run; the others' runs are kept from --out")
    parser.add_argument("--gpu", action="store_true", help="search on a GPU copy (gpu_check.sh)")
    args = parser.parse_args()
    doc = {"commands": {}, "data": {}, "runs": [], "profiles": {},
           **kept_results(args.out / "index.json", args.sets), "machine": machine(),
           "faiss": faiss.__version__, "search_device": "gpu" if args.gpu else "cpu",
           "threads": {"search": args.search_threads, "build": args.build_threads}}
    doc["commands"] |= dict.fromkeys(args.sets, command("bench.index_bench"))
    for name in args.sets:
        {"same-distribution": same_distribution, "cross-modal": cross_modal}[name](args, doc)
    doc["runs"].sort(key=lambda r: (SETS.index(r["queries"]), r["n"]))
    plot = figure(doc["runs"], doc["profiles"])
    for p in doc["profiles"].values():  # the plot's per-vector cosines stay out of the results
        p.pop("nn1", None), p.pop("nn10", None)
    write_results(args.out, "index", doc, markdown(doc), plot)


def same_distribution(args: argparse.Namespace, doc: dict) -> None:
    draw = partial(mixture, dim=DIM, centres=args.centres, spread=args.spread, offset=args.offset)
    profiles = doc["profiles"]  # beside the real OpenMoji images' and texts' (cross-modal set)
    profiles["synthetic, n=1,870"] = profile(draw(1870, seed=3))
    for n in args.sizes:
        runs, truth_scores = bench_size(n, draw(n, seed=1), draw(args.queries, seed=2), args)
        doc["runs"] += [{"queries": "same-distribution", **r} for r in runs]
        profiles[f"synthetic n={n:,} (queries vs base)"] = neighbours(
            n, truth_scores, profiles["synthetic, n=1,870"]["random_pair_median"])
    doc["data"]["same-distribution"] = (
        f"Gaussian mixture, {args.centres} centres, spread {args.spread}, d={DIM}, "
        "unit-normalised; queries drawn fresh from the same mixture")


def cross_modal(args: argparse.Namespace, doc: dict) -> None:
    print("== cross-modal: text queries, image base", flush=True)
    base, queries, real, doc["data"]["cross-modal"] = cross_modal_data(args)
    tune_on, report_on = queries[: len(queries) // 2], queries[len(queries) // 2:]
    profiles = doc["profiles"]
    profiles |= {"cross-modal: real images, all": profile(real),
                 "cross-modal: real texts, all": profile(queries),
                 "cross-modal: base sample": profile(base[:len(real)])}
    for n in args.sizes:
        runs, truth_scores = bench_size(n, base[:n], report_on[: args.queries], args,
                                        tune_on[: args.queries])
        doc["runs"] += [{"queries": "cross-modal", **r} for r in runs]
        profiles[f"cross-modal n={n:,} (text queries vs image base)"] = neighbours(
            n, truth_scores, profiles["cross-modal: base sample"]["random_pair_median"])


if __name__ == "__main__":
    main()
