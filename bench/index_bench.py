"""Index benchmark: Flat vs IVF vs HNSW on synthetic embeddings, and the batch re-index job
against the raw encoder, measured side by side in one run.

Synthetic vectors (d=256) are a seeded Gaussian mixture with thousands of centres, normalised
to the unit sphere: clustered like real embeddings rather than uniform noise, whose neighbours
are all nearly equidistant and make every ANN index look bad (or good) for the wrong reason.
The report compares its neighbour-cosine profile with real embeddings of the OpenMoji corpus.

    python -m bench.index_bench   (the demo checkpoint and corpus by default)

writes bench/results/index.json, index.md and index.png. Timings are medians of what this
machine gave while it ran (2 shared cores); ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from bench import index_report
from bench.harness import arguments, command, machine, relative, timed, write_results
from index.store import FaissStore, _hnsw, auto_spec

DIM = index_report.DIM
K = 10
NPROBES = (1, 2, 4, 8, 16, 32, 64)
EF_SEARCH = (16, 32, 64, 128, 256)


# -- data ---------------------------------------------------------------------------------------
def mixture(n: int, centres: int, spread: float, seed: int, offset: float = 0.0,
            rng_centres: int = 0) -> np.ndarray:
    """n unit vectors: a random unit centre each (of `centres`, fixed by rng_centres) plus
    isotropic noise of total norm ~spread, renormalised. `offset` adds a direction shared by
    all centres (learned embeddings live in a cone: random pairs have cosine
    ~offset^2 / (1 + offset^2), not 0). Generated in chunks (1M x 256 x 4 B)."""
    gen = np.random.default_rng(rng_centres)
    shared = _unit(gen.standard_normal((1, DIM)))
    means = _unit(gen.standard_normal((centres, DIM)) / np.sqrt(DIM) + offset * shared)
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        rows = means[rng.integers(0, centres, m)]
        noise = rng.standard_normal((m, DIM), dtype=np.float32) * (spread / np.sqrt(DIM))
        out[start:start + m] = _unit(rows + noise)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- measuring one index -------------------------------------------------------------------------
def search_timings(store: FaissStore, queries: np.ndarray, size: int
                   ) -> tuple[float, float, float, np.ndarray]:
    """Queries/s, median and p99 ms per search call of `size` queries, and the ids found."""
    times, found = [], []
    for start in range(0, len(queries), size):
        seconds, (_, ids) = timed(store.search, queries[start:start + size], K)
        times.append(seconds)
        found.append(ids)
    t = np.array(times)
    return (len(queries) / t.sum(), 1e3 * float(np.median(t)), 1e3 * float(np.quantile(t, 0.99)),
            np.concatenate(found))


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def measure(store: FaissStore, name: str, n: int, q_single: np.ndarray, q_batch: np.ndarray,
            truth: np.ndarray, build_s: float, memory_mb: float) -> dict:
    qps_b, p50_b, p99_b, found = search_timings(store, q_batch, 64)
    qps_s, p50_s, p99_s, _ = search_timings(store, q_single, 1)
    row = {"n": n, "index": name, "recall_at_10": round(recall(found, truth), 4),
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
    before = rss_mb()
    start = time.perf_counter()
    store = FaissStore.create(DIM, spec, gpu=False)
    if spec.startswith("HNSW"):
        _hnsw(store.index).efConstruction = 40
    if not store.is_trained:
        store.train(data, max_points=min(len(data), 40 * int(spec[3:].split(",")[0])))
    store.add(ids, data)
    build_s = time.perf_counter() - start
    faiss.omp_set_num_threads(args.search_threads)
    memory = faiss.serialize_index(store.index).nbytes / 2**20
    print(f"  built {spec} in {build_s:.1f} s (serialised {memory:.0f} MB, "
          f"rss +{rss_mb() - before:.0f} MB)", flush=True)
    if args.gpu:  # the service's placement: CPU master, searches on a GPU copy
        store = FaissStore(store.index, spec, DIM, gpu=True)
        print(f"  {spec} searches on the GPU: {store.on_gpu}", flush=True)
    return store, build_s, memory


def bench_size(n: int, args: argparse.Namespace) -> tuple[list[dict], np.ndarray]:
    print(f"== n = {n}", flush=True)
    data = mixture(n, args.centres, args.spread, seed=1, offset=args.offset)
    ids = np.arange(n, dtype=np.int64) * 3 + 1_000_000_007  # explicit ids, not positions
    queries = mixture(args.queries, args.centres, args.spread, seed=2, offset=args.offset)
    q_single = queries[: args.single_queries]
    runs: list[dict] = []

    flat, build_s, mem = build_store("Flat", data, ids, args)
    seconds, (truth_scores, truth) = timed(flat.search, queries, K)
    print(f"  exact ground truth: {seconds:.1f} s", flush=True)
    flat_row = measure(flat, "Flat", n, q_single[: args.flat_single_queries], queries, truth,
                       build_s, mem)
    runs.append(flat_row)
    del flat
    gc.collect()

    # (spec, the store's search knob, its name in the table, its values)
    families = [(auto_spec(n, DIM) if n >= 20_000 else "IVF256,Flat", "nprobe", "nprobe", NPROBES)]
    if n <= args.hnsw_max:
        families.append(("HNSW32", "ef_search", "efSearch", EF_SEARCH))
    for spec, knob, label, values in families:
        store, build_s, mem = build_store(spec, data, ids, args)
        for value in values:
            setattr(store, knob, value)
            runs.append(measure(store, f"{spec} {label}={value}", n, q_single, queries, truth,
                                build_s, mem))
        del store
        gc.collect()
    for row in runs:
        row["speedup_vs_flat"] = round(row["qps_single"] / flat_row["qps_single"], 2)
    return runs, truth_scores


# -- neighbour profile ---------------------------------------------------------------------------
def profile(vectors: np.ndarray) -> dict:
    """Cosine to the 1st and 10th nearest other vector, and between random pairs (medians)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    a, b = np.random.default_rng(0).integers(0, len(vectors), (2, 4000))
    keep = a != b
    pairs = np.sum(vectors[a[keep]] * vectors[b[keep]], axis=1)
    return neighbours(len(vectors), -np.sort(-sims, axis=1)[:, :K], float(np.median(pairs)))


def neighbours(n: int, top: np.ndarray, random_pair: float) -> dict:
    """The profile of n vectors from rows of best-first neighbour cosines."""
    return {"n": n, "nn1_median": round(float(np.median(top[:, 0])), 4),
            "nn10_median": round(float(np.median(top[:, K - 1])), 4),
            "random_pair_median": round(random_pair, 4),
            "nn1": top[:, 0].tolist(), "nn10": top[:, K - 1].tolist()}


# -- batch job vs raw encoder --------------------------------------------------------------------
def bench_job(args: argparse.Namespace) -> tuple[dict, dict[str, np.ndarray]]:
    import torch

    from index.build import build
    from index.cli import corpus_items
    from index.snapshots import open_generation
    from models.data.images import open_image
    from models.inference import Encoder

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="xmr-index-bench-"))
    corpus = work / "corpus"
    corpus.mkdir()
    source = Path(args.data).resolve()
    lines = (source / "manifest.jsonl").read_text().splitlines()[: args.job_items]
    (corpus / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copy(source / "labels.json", corpus / "labels.json")
    (corpus / "images").symlink_to(source / "images")
    encoder = Encoder.load(args.checkpoint, "cpu")
    planned, levels = corpus_items(corpus)
    texts = [i.text or "" for i in planned if i.modality == "text"]
    sources = [i.source or "" for i in planned if i.modality == "image"]
    total = len(texts) + len(sources)
    raw_times, job_times = [], []
    warm = [open_image(s) for s in sources[:8]]
    encoder.encode_images(warm), encoder.encode_texts(texts[:8])  # first-call set-up untimed
    for round_ in range(args.job_rounds):
        decoded = [open_image(s) for s in sources]  # the raw encoder gets decoded images
        start = time.perf_counter()
        for b in range(0, len(texts), 64):
            encoder.encode_texts(texts[b:b + 64])
        for b in range(0, len(decoded), 64):
            encoder.encode_images(decoded[b:b + 64])
        raw_times.append(time.perf_counter() - start)
        del decoded
        out = work / f"index-{round_}"
        start = time.perf_counter()
        planned, levels = corpus_items(corpus)  # the job hashes and decodes files itself
        build(out, encoder, planned, open_image, levels=levels, batch_size=64, progress=False)
        job_times.append(time.perf_counter() - start)
        print(f"  round {round_}: raw encoder {total / raw_times[-1]:.1f} items/s, "
              f"batch job {total / job_times[-1]:.1f} items/s", flush=True)
    gen = open_generation(next((work / "index-0").glob("gen-*")), gpu=False)
    vectors = {m: gen.meta.all_vectors(m, encoder.dim)[1] for m in ("image", "text")}
    gen.close()
    shutil.rmtree(work, ignore_errors=True)
    raw, job = float(np.median(raw_times)), float(np.median(job_times))
    return {"items": total, "images": len(sources), "texts": len(texts),
            "raw_encoder_items_per_s": round(total / raw, 2),
            "batch_job_items_per_s": round(total / job, 2),
            "raw_s": [round(t, 2) for t in raw_times], "job_s": [round(t, 2) for t in job_times],
            "checkpoint": relative(str(args.checkpoint)), "method": encoder.method_name}, vectors


def profile_corpus_texts(args: argparse.Namespace) -> dict:
    """Neighbour profile of every text of the corpus (cheap to embed, unlike the images; the job
    sample above is the first lines of the manifest, one emoji group), next to synthetic sets of
    the same size at the benchmarked offset and at a smaller one."""
    from index.cli import corpus_items
    from models.inference import Encoder

    encoder = Encoder.load(args.checkpoint, "cpu")
    texts = [i.text or "" for i in corpus_items(args.data)[0] if i.modality == "text"]
    real = np.concatenate([encoder.encode_texts(texts[b:b + 128])
                           for b in range(0, len(texts), 128)])
    out = {f"real text, all {len(texts)} (OpenMoji, {encoder.method_name})": profile(real)}
    for offset in sorted({args.offset, 0.35}, reverse=True):
        out[f"synthetic, same n, offset {offset}"] = profile(
            mixture(len(texts), args.centres, args.spread, seed=3, offset=offset))
    for p in out.values():
        p.pop("nn1"), p.pop("nn10")
    return out


def main() -> None:
    parser = arguments(__doc__, "checkpoint", "data")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--centres", type=int, default=4096)
    parser.add_argument("--spread", type=float, default=0.6)
    parser.add_argument("--offset", type=float, default=1.3)
    parser.add_argument("--search-threads", type=int, default=1,
                        help="FAISS OpenMP threads while searching (on 2 shared cores, 2 spin"
                             "-waiting threads made single queries 6x slower than 1)")
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single-queries", type=int, default=500)
    parser.add_argument("--flat-single-queries", type=int, default=200)
    parser.add_argument("--hnsw-max", type=int, default=1_000_000)
    parser.add_argument("--job-items", type=int, default=256)
    parser.add_argument("--job-rounds", type=int, default=2)
    parser.add_argument("--gpu", action="store_true", help="search on a GPU copy (gpu_check.sh)")
    parser.add_argument("--profile-only", action="store_true",
                        help="only the neighbour profile of all corpus texts (index_profile.json)")
    parser.add_argument("--skip-job", action="store_true",
                        help="synthetic index runs only (no encoder, no corpus)")
    args = parser.parse_args()
    if args.profile_only:
        doc = profile_corpus_texts(args)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "index_profile.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(json.dumps(doc, indent=1))
        return
    job: dict = {}
    profiles: dict[str, dict] = {}
    n_real = 384
    if not args.skip_job:
        print("== batch job vs raw encoder", flush=True)
        job, real = bench_job(args)
        profiles = {f"real {m} (OpenMoji, {job['method']})": profile(v) for m, v in real.items()}
        n_real = max(len(v) for v in real.values())
    profiles["synthetic, same n"] = profile(mixture(n_real, args.centres, args.spread, seed=3,
                                                           offset=args.offset))

    runs: list[dict] = []
    for n in args.sizes:
        size_runs, truth_scores = bench_size(n, args)
        runs += size_runs
        profiles[f"synthetic n={n:,} (queries vs base)"] = neighbours(
            n, truth_scores, profiles["synthetic, same n"]["random_pair_median"])

    doc = {"command": command("bench.index_bench"), "machine": machine(),
           "faiss": faiss.__version__,
           "threads": {"search": args.search_threads, "build": args.build_threads},
           "data": f"Gaussian mixture, {args.centres} centres, spread {args.spread}, d={DIM}, "
                   "unit-normalised; queries drawn fresh from the same mixture",
           "search_device": "gpu" if args.gpu else "cpu",
           "runs": runs, "batch_job_vs_encoder": round(
               job["batch_job_items_per_s"] / job["raw_encoder_items_per_s"], 3) if job else None,
           "batch_job": job, "profiles": profiles}
    figure = index_report.figure(runs, profiles)
    for p in profiles.values():  # the plot's per-vector cosines stay out of the results
        p.pop("nn1"), p.pop("nn10")
    markdown = index_report.markdown(doc)
    write_results(args.out, "index", doc, markdown, figure)
    print(markdown)


if __name__ == "__main__":
    main()
