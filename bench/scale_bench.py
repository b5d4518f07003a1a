"""Past one machine: the Ray engine against the local engine, FAISS against Milvus.

    nice -n 10 python bench/scale_bench.py --checkpoint artifacts/runs/default/checkpoint.pt \
        --data artifacts/data/openmoji --cache artifacts/cache [--synthetic 100000]

Writes bench/results/scale.{json,md,png}. What is measured, exactly:

1. Embedding engines, side by side in one process, on the same payloads and the same checkpoint:
   - OpenMoji: every item's text and image (2 rows per item), backbone features read from the
     feature cache (as `xmr index build --cache` does), so the work is the checkpoint's heads
     plus cache reads: this is the fixed-cost (start-up dominated) end of the range.
   - Synthetic, 100k: precomputed backbone features (the OpenMoji texts' real MiniLM sentence
     vectors, drawn at random with 5% noise): the engines run the checkpoint's text head on
     them (each row's payload is its row number; actors memory-map the .npy). Per-row work is
     tiny, so this measures what the engines cost per row at scale (batching, transfer).
   - Synthetic texts, 10k: seeded synthetic captions (3-6 words from the OpenMoji names'
     vocabulary, each unique), no cache: MiniLM + head for every text, the compute-bound end
     (100k of these take about an hour per engine on this shared 2-core box).
   Local engine: one process, torch's default threads (2 here). Ray engine: a local Ray
   instance with 2 encoder actors (`map_batches`, actor pool of 2, 1 CPU and 1 torch thread
   each). Both times are end to end: the local one includes loading the encoder, the Ray one
   starting Ray, starting the actors (each loads the encoder) and shutting Ray down; Ray's own
   start-up (`ray.init`) is also reported alone. Medians over --repeats (OpenMoji) /
   --synthetic-repeats (synthetic). Equality: max |local - ray| over every vector element, and
   rows compared in order (the job assigns ids in row order, so equal rows = equal ids).
2. Search parity: on the vectors just computed (OpenMoji images as the database and texts as
   queries; the synthetic vectors split into database and queries), recall@10 of the FAISS
   store and the Milvus store (milvus-lite) against exact search (numpy, float64). A returned
   id counts as a hit when its exact score is within 1e-5 of the 10th exact score (ties between
   near-duplicate captions are not misses). Default configurations of each (exact FLAT), and
   the same approximate index types on each (IVF with the nlist `--index-type auto` picks for
   that size, nprobe 16; HNSW M 32, ef 128: the FAISS store's defaults), with build + search
   seconds (milvus-lite runs as a local server process, so its seconds include the RPCs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from index.engines import LocalEngine, embed_rows  # noqa: E402
from index.ray_engine import RayEngine  # noqa: E402
from models.embedder import EncoderSpec  # noqa: E402

RESULTS = Path(__file__).parent / "results"
K = 10
TIE = 1e-5


# -- corpora ---------------------------------------------------------------------------------


def openmoji_rows(data: Path) -> tuple[list[str], list[str]]:
    from models.data.corpus import read_corpus

    corpus = read_corpus(data)
    items = list(corpus.items)
    modalities = ["text"] * len(items) + ["image"] * len(items)
    payloads = [i.text for i in items] + [str(corpus.image_path(i)) for i in items]
    return modalities, payloads


def synthetic_features(data: Path, cache: Path, n: int, out: Path, seed: int = 0) -> Path:
    """n synthetic MiniLM sentence vectors: the OpenMoji texts' real ones (from the feature
    cache), each drawn at random plus 5% Gaussian noise, renormalised. Saved as .npy."""
    from models.backbones.cache import FeatureCache
    from models.backbones.extract import text_features
    from models.backbones.text import MiniLM
    from models.data.corpus import read_corpus

    texts = [i.text for i in read_corpus(data).items]
    real = text_features(texts, MiniLM(), FeatureCache(cache), progress=False).pooled
    rng = np.random.default_rng(seed)
    rows = real[rng.integers(0, len(real), n)]
    rows = rows + 0.05 * rng.standard_normal(rows.shape).astype(np.float32) / np.sqrt(
        rows.shape[1])
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
        import torch

        from models.inference import Encoder

        if threads is not None:
            torch.set_num_threads(threads)
        self.encoder = Encoder.load(spec.checkpoint, device)
        self.features = np.load(spec.features, mmap_mode="r")
        self.dim = self.encoder.dim

    def embed(self, modality: str, payloads: Sequence[str]) -> np.ndarray:
        import torch

        from models.backbones.text import MAX_TOKENS

        pooled = torch.from_numpy(np.ascontiguousarray(self.features[np.asarray(
            payloads, dtype=np.int64)]))
        tokens = torch.zeros(len(pooled), MAX_TOKENS, pooled.shape[1])
        tokens[:, 0] = pooled
        mask = torch.zeros(len(pooled), MAX_TOKENS, dtype=torch.bool)
        mask[:, 0] = True
        with torch.inference_mode():
            out = self.encoder.method.embed_texts({"pooled": pooled, "tokens": tokens,
                                                   "mask": mask})
        return out.float().numpy()


def synthetic_texts(data: Path, n: int, seed: int = 0) -> list[str]:
    from models.data.corpus import read_corpus

    words = sorted({w.lower() for i in read_corpus(data).items for w in i.text.split()})
    rng = np.random.default_rng(seed)
    texts, seen = [], set()
    while len(texts) < n:
        text = " ".join(rng.choice(words, size=int(rng.integers(3, 7))))
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


# -- engines ---------------------------------------------------------------------------------


def time_local(spec: EncoderSpec, modalities: list[str], payloads: list[str],
               dim: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = embed_rows(LocalEngine(spec), modalities, payloads, dim)
    return time.perf_counter() - start, out


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
        seconds, local = time_local(spec, modalities, payloads, dim)
        local_s.append(seconds)
        seconds, init, ray_out = time_ray(spec, modalities, payloads, dim)
        ray_s.append(seconds)
        init_s.append(init)
        print(f"{name} repeat {r}: local {local_s[-1]:.1f}s ray {ray_s[-1]:.1f}s "
              f"(ray.init {init:.1f}s)", flush=True)
    n = len(payloads)
    lm, rm = statistics.median(local_s), statistics.median(ray_s)
    result = {
        "rows": n, "repeats": repeats,
        "local_seconds": lm, "ray_seconds": rm, "ray_init_seconds": statistics.median(init_s),
        "local_rows_per_s": n / lm, "ray_rows_per_s": n / rm,
        "throughput_ratio_ray_over_local": lm / rm,
        "max_abs_diff": float(np.abs(local - ray_out).max()),
        "rows_equal_within_1e-5": bool(np.allclose(local, ray_out, atol=1e-5, rtol=0)),
        "all_seconds": {"local": local_s, "ray": ray_s, "ray_init": init_s},
    }
    return result, local


# -- search parity ---------------------------------------------------------------------------


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


def faiss_search(spec: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]:
    """The project's FAISS store (index.store.FaissStore), as `xmr index build` makes it."""
    def run(ids: np.ndarray, base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
        from index.store import FaissStore

        store = FaissStore.create(base.shape[1], spec, n_hint=len(base), gpu=False)
        if not store.is_trained:
            store.train(base)
        store.add(ids, base)
        return store.search(queries, k)[1]

    return run


def milvus_search(kind: str,
                  params: dict | None = None
                  ) -> Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]:
    """The project's Milvus store (index.milvus_store.MilvusStore) on milvus-lite."""
    def run(ids: np.ndarray, base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
        from index.milvus_store import MilvusStore

        with tempfile.TemporaryDirectory() as tmp:
            store = MilvusStore(Path(tmp) / "milvus.db", "bench", base.shape[1],
                                index_type=kind, index_params=params or {})
            store.add(ids, base)
            store.flush()
            found = np.concatenate([store.search(queries[s : s + 100], k)[1]
                                    for s in range(0, len(queries), 100)])
            store.close()
        return found

    return run


def search_parity(name: str, base: np.ndarray, queries: np.ndarray) -> dict:
    ids = np.arange(len(base), dtype=np.int64) * 7 + 3  # ids are not row positions
    exact, scores = exact_topk(base, queries, K)
    result: dict = {"database": len(base), "queries": len(queries), "configs": {}}
    from index.store import auto_spec

    auto = auto_spec(len(base), base.shape[1])
    if auto.startswith("IVF"):
        nlist = int(auto[3:].split(",")[0])
    else:  # small: the same rule (about 4 sqrt(n) lists), without auto's floor of 256
        nlist = max(16, 2 ** round(np.log2(4 * np.sqrt(len(base)))))
    configs = {
        "FAISS Flat (exact)": faiss_search("Flat"),
        "Milvus FLAT (exact; default)": milvus_search("FLAT"),
        f"FAISS IVF{nlist},Flat nprobe 16": faiss_search(f"IVF{nlist},Flat"),
        f"Milvus IVF_FLAT nlist {nlist} nprobe 16": milvus_search("IVF_FLAT", {"nlist": nlist}),
        "FAISS HNSW32 efSearch 128": faiss_search("HNSW32"),
        "Milvus HNSW M 32 ef 128": milvus_search("HNSW", {"M": 32, "efConstruction": 80}),
    }
    result["faiss_auto_spec"] = auto
    for label, run in configs.items():
        start = time.perf_counter()
        found = run(ids, base, queries, K)
        seconds = time.perf_counter() - start
        recall = recall_at_k(found, exact, scores, ids)
        result["configs"][label] = {"recall_at_10": recall, "seconds_build_and_search": seconds}
        print(f"{name} {label}: recall@10 {recall:.4f} ({seconds:.1f}s)", flush=True)
    return result


# -- report ----------------------------------------------------------------------------------


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Past one machine: Ray engine vs local engine, FAISS vs Milvus\n",
        f"Engines: `{result.get('command')}`; search: `{result.get('search_command')}`; on "
        f"{result.get('machine')}.\n",
        "## Embedding engines (end to end, medians)\n",
        "| corpus | rows | local s | Ray (2 workers) s | ray.init s | Ray/local throughput "
        "| max abs diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in result["engines"].items():
        lines.append(
            f"| {name} | {e['rows']} | {e['local_seconds']:.1f} | {e['ray_seconds']:.1f} "
            f"| {e['ray_init_seconds']:.1f} | {e['throughput_ratio_ray_over_local']:.2f}x "
            f"| {e['max_abs_diff']:.1e} |"
        )
    job = result.get("job")
    if job:
        lines += ["", f"## `xmr index build` itself, once per engine on {job['corpus']}\n",
                  f"`{result.get('job_command')}`; no feature cache (the job's own path: every "
                  "image decoded and run through the backbone).\n",
                  "| engine | seconds |", "|---|---|"]
        lines += [f"| {name} | {e['seconds']:.1f} |" for name, e in job["engines"].items()]
        lines += ["", f"Ray/local throughput {job['throughput_ratio_ray_over_local']:.2f}x. "
                  + "; ".join(f"{m}: {job[m]['items']} items, ids and records equal: "
                              f"{job[m]['ids_and_records_equal']}, max abs diff "
                              f"{job[m]['max_abs_diff']}" for m in ("image", "text")) + "."]
    lines += ["", "## Search parity: recall@10 against exact search on the same vectors\n",
              "| vectors | configuration | recall@10 | build + search s |", "|---|---|---|---|"]
    for name, s in result["search"].items():
        for label, c in s["configs"].items():
            lines.append(f"| {name} ({s['database']} db, {s['queries']} queries) | {label} "
                         f"| {c['recall_at_10']:.4f} | {c['seconds_build_and_search']:.1f} |")
    lines += ["", result["notes"], ""]
    path.write_text("\n".join(lines))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(result["engines"])
    for offset, key, label in ((-0.2, "local_rows_per_s", "local"),
                               (0.2, "ray_rows_per_s", "Ray, 2 workers")):
        left.bar([i + offset for i in range(len(names))],
                 [result["engines"][n][key] for n in names], 0.4, label=label)
    left.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=7)
    left.set_yscale("log")
    left.set_ylabel("rows / s, end to end (log)")
    left.set_title("embedding engines")
    left.legend()
    labels: list[str] = []
    values: list[float] = []
    for name, s in result["search"].items():
        for label, c in s["configs"].items():
            labels.append(f"{name}: {label}")
            values.append(c["recall_at_10"])
    if not values:  # search stage not run yet
        right.set_axis_off()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return
    right.barh(range(len(values)), values)
    right.set_yticks(range(len(values)), labels, fontsize=7)
    right.set_xlim(min(0.8, min(values) - 0.02), 1.0)
    right.set_xlabel("recall@10 vs exact")
    right.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path,
                        default=Path("artifacts/runs/default/checkpoint.pt"))
    parser.add_argument("--data", type=Path, default=Path("artifacts/data/openmoji"))
    parser.add_argument("--cache", type=Path, default=Path("artifacts/cache"))
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic-texts", type=int, default=10_000,
                        help="synthetic captions through the full encoder (MiniLM + head)")
    parser.add_argument("--synthetic-repeats", type=int, default=1)
    parser.add_argument("--stage", default="all",
                        choices=("all", "engines", "search", "job", "report"),
                        help="engines: time the engines and keep their vectors in --work; "
                             "search: search parity on the kept vectors (merged into the json); "
                             "job: xmr index build once per engine; "
                             "report: re-render md/png from the json")
    parser.add_argument("--work", type=Path, default=Path("artifacts/scale-bench"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    command = "python " + " ".join(sys.argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "scale.json"
    result: dict = json.loads(json_path.read_text()) if json_path.exists() else {}
    result.setdefault("engines", {})
    result.setdefault("search", {})
    result["notes"] = NOTES
    if args.stage in ("all", "engines"):
        result["command"] = command
        result["machine"] = machine()
        result["engines"] = run_engines(args)
    if args.stage in ("all", "job"):
        result["job_command"] = command
        result["job"] = run_job(args)
    if args.stage in ("all", "search"):
        result["search_command"] = command
        result["search"] = run_search(args)
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, args.out / "scale.md")
    plot(result, args.out / "scale.png")
    print(json.dumps({k: v for k, v in result.items() if "command" not in k}, indent=1))


NOTES = (
    "Ray runs 2 actors with 1 torch thread each; the local engine 1 process with torch's "
    "default threads (2), on the same 2 cores, shared with other jobs (load average 9-16 "
    "during these runs, so single runs move by tens of percent). Ray's fixed cost here is "
    "10-20 s (ray.init, worker start-up) plus one encoder load per actor: it dominates while "
    "the per-row work is small (OpenMoji through the cache, the 100k head-only rows). When "
    "the per-row work is real (MiniLM on every caption), two single-threaded actors did "
    "slightly better than one two-threaded process. On one 2-core host neither engine can "
    "be much faster than the other; Ray pays off when its actors sit on more cores or GPUs "
    "than one host has. Outputs are identical up to float rounding (max abs diff column). "
    "Recall: the exact configurations are exact on both backends, and each approximate index "
    "type gives FAISS and Milvus the same or nearly the same recall. The synthetic vectors "
    "are tight clusters (1870 centres, 5% noise), an easy case for IVF/HNSW, so their 1.0 "
    "says the backends agree, not that these settings suffice for real 100k corpora. Milvus "
    "seconds include milvus-lite's local RPCs and its index build; they are not serving "
    "latencies of a Milvus server."
)


def machine() -> str:
    import torch

    return (f"{platform.machine()}, {os.cpu_count()} CPUs shared with other jobs, local engine "
            f"{torch.get_num_threads()} torch threads, CPU")


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


def run_job(args: argparse.Namespace) -> dict:
    """`xmr index build` itself, once per engine, on the same corpus: wall time, and the two
    indexes compared (ids and records per modality, vectors)."""
    import subprocess

    from index.metadata import DATABASE, Metadata

    out: dict = {"corpus": str(args.data), "engines": {}}
    contents = {}
    for engine in ("local", "ray"):
        index_dir = args.work / f"job-{engine}"
        if index_dir.exists():
            import shutil

            shutil.rmtree(index_dir)
        command = [sys.executable, "-m", "xmr", "index", "build", "--checkpoint",
                   str(args.checkpoint), "--data", str(args.data), "--out", str(index_dir),
                   "--no-progress", "--engine", engine]
        if engine == "ray":
            command += ["--workers", "2"]
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1])
        out["engines"][engine] = {"seconds": time.perf_counter() - start}
        print(f"job {engine}: {out['engines'][engine]['seconds']:.1f}s", flush=True)
        generation = sorted(index_dir.glob("gen-*"))[-1]
        meta = Metadata(generation / DATABASE)
        dim = json.loads((generation / "manifest.json").read_text())["dim"]
        contents[engine] = {}
        for modality in ("image", "text"):
            ids, vectors = meta.all_vectors(modality, dim)
            records = meta.get_many(ids.tolist())
            keys = [(i, records[i].content_hash, records[i].labels) for i in ids.tolist()]
            contents[engine][modality] = (keys, vectors)
        meta.close()
    for modality in ("image", "text"):
        a, b = contents["local"][modality], contents["ray"][modality]
        out[modality] = {"items": len(a[0]), "ids_and_records_equal": a[0] == b[0],
                         "max_abs_diff": float(np.abs(a[1] - b[1]).max()) if a[0] == b[0]
                         else None}
    local_s, ray_s = out["engines"]["local"]["seconds"], out["engines"]["ray"]["seconds"]
    out["throughput_ratio_ray_over_local"] = local_s / ray_s
    return out


def run_search(args: argparse.Namespace) -> dict:
    search = {}
    vectors = np.load(args.work / "openmoji.npy")
    half = len(vectors) // 2  # texts first, then their images
    search["openmoji text->image"] = search_parity("openmoji", vectors[half:], vectors[:half])
    synthetic = args.work / "synthetic.npy"
    if args.synthetic and synthetic.exists():
        vectors = np.load(synthetic)
        rng = np.random.default_rng(1)
        queries = rng.choice(len(vectors), size=1000, replace=False)
        base = np.setdiff1d(np.arange(len(vectors)), queries)
        search[f"synthetic {len(vectors) // 1000}k"] = search_parity(
            "synthetic", vectors[base], vectors[queries])
    return search


if __name__ == "__main__":
    main()
