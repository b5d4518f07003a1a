"""Service benchmark: text-to-image search over HTTP (`xmr serve` in its own process, wrk as the
load, both on this machine's cores as on a one-box deployment) at 1, 8 and 32 clients on the
OpenMoji index and a 100k synthetic captioned corpus (bench.service_corpora), vector-only and
hybrid side by side, beside the raw encoder's throughput, the bare search time and the default
index's recall, all in the same run. With `--runtimes`, each encoder runtime instead: the text
encoder raw, text and image searches served (runtimes.*)."""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np

from bench import harness, service_report
from bench.harness import CLIENTS, ROOT, K, Target, arguments, measured_apart, server, timed
from bench.service_corpora import Corpus, prepare_corpora, queries_of, synthetic_vectors
from models.device import RUNTIMES

if TYPE_CHECKING:
    from models.inference import Encoder


def encoder_figures(checkpoint: Path, data: Path, batch: int, workers: int, threads: int,
                    seconds: float = 8) -> dict[str, float]:
    """Raw encoder on the service's device and text runtime, on `threads` threads (0: the
    library's default): texts/s of `workers` threads encoding batches of the service's size at
    once (as its encoder workers do), and one query's time (median)."""
    from models.inference import Encoder
    from service.settings import Settings

    settings = Settings()
    queries = queries_of(data)
    encoder = Encoder.load(checkpoint, settings.device, threads or None, settings.encoder_runtime)
    encoder.encode_texts(queries[:batch])  # warm-up
    single = [timed(encoder.encode_texts, [query])[0] for query in queries[:200]]
    batched = concurrent_texts_per_s(encoder, queries, batch, seconds, workers)[0]
    return {"encoder_batched_qps": batched, "encoder_single_ms": 1000 * statistics.median(single)}


def concurrent_texts_per_s(encoder: Encoder, queries: list[str], batch: int, seconds: float,
                           workers: int) -> tuple[float, float]:
    """Texts/s of `workers` threads each encoding batches for `seconds`, all started at once;
    and the CPU seconds per text they took."""
    start = threading.Barrier(workers)
    counts = [0] * workers

    def work(n: int) -> None:
        start.wait()
        deadline, i = time.perf_counter() + seconds, n * 101
        while time.perf_counter() < deadline:
            encoder.encode_texts([queries[(i + j) % len(queries)] for j in range(batch)])
            counts[n] += batch
            i += batch

    began, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(workers)))
    texts = sum(counts)
    return texts / (time.perf_counter() - began), (time.process_time() - cpu) / texts


def search_ms(index: Path, checkpoint_id: str, dim: int, threads: int, repeats: int = 200
              ) -> float:
    """One text-to-image catalog search (k=10) in this process on `threads` FAISS threads (0:
    the library's default): the median time."""
    import faiss

    from index.catalog import Catalog

    if threads:
        faiss.omp_set_num_threads(threads)
    rng = np.random.default_rng(1)
    with Catalog.open(index, checkpoint_id=checkpoint_id, dim=dim) as catalog:
        times = []
        for _ in range(repeats):
            query = rng.standard_normal((1, dim)).astype(np.float32)
            query /= np.linalg.norm(query)
            times.append(timed(catalog.search, query, K, "image")[0])
    return 1000 * statistics.median(times)


def recall_figures(checkpoint: Path, data: Path, exact: Path, approximate: Path
                   ) -> dict[str, float]:
    """recall@10 of `approximate` against `exact` (same items and ids) for the benchmark's own
    queries (OpenMoji texts through the encoder) and for fresh draws from the synthetic
    corpus's mixture (queries with near neighbours, as real queries have in a real corpus)."""
    from index.catalog import Catalog
    from models.inference import Encoder

    encoder = Encoder.load(checkpoint, "cpu")
    texts = encoder.encode_texts(queries_of(data))
    draws = synthetic_vectors(len(texts), encoder.dim, seed=1)
    out = {}
    for name, queries in (("recall_texts", texts), ("recall_mixture", draws)):
        answers = []
        for index in (exact, approximate):
            with Catalog.open(index, checkpoint_id=encoder.checkpoint_id,
                              dim=encoder.dim) as catalog:
                answers.append(catalog.search(np.ascontiguousarray(queries), K, "image"))
        out[name] = float(np.mean([len({h.id for h in a} & {h.id for h in e}) / K
                                   for e, a in zip(*answers, strict=True)]))
        # how near the 10th true neighbour is: whether the query has neighbours to find
        out[name.replace("recall", "kth_cosine")] = float(np.mean([e[-1].score
                                                                   for e in answers[0]]))
    return out


def encoder_counters(url: str) -> np.ndarray:
    """The server's text encoder histograms so far: summed batch sizes (rows encoded), batches
    and seconds spent encoding them."""
    values = dict(line.rpartition(" ")[::2] for line in httpx.get(f"{url}/metrics").text
                  .splitlines())
    return np.array([float(values.get(f'xmr_encoder_batch_{name}{{kind="text"}}', 0))
                     for name in ("size_sum", "size_count", "seconds_sum")])


def reference(corpus: Corpus, args: argparse.Namespace, ckpt_id: str, dim: int, batch: int
              ) -> dict[str, float]:
    """The raw figures each ratio is taken against, measured beside the runs: the best this
    machine gave, with the library's default threads or one thread, and (for throughput) with
    the service's own setting, one 1-thread worker per core encoding at once."""
    from service.settings import Settings

    search = min(measured_apart(search_ms, corpus.index, ckpt_id, dim, n) for n in (0, 1))
    workers = Settings().encoder_worker_count
    settings = {"default": (1, 0), "1_thread": (1, 1), "workers": (workers, 1)}
    raws = {name: measured_apart(encoder_figures, args.checkpoint, args.data, batch, *setting)
            for name, setting in settings.items()}
    figures = {"encoder_batched_qps": max(r["encoder_batched_qps"] for r in raws.values()),
               "encoder_single_ms": min(r["encoder_single_ms"] for r in raws.values()),
               "encoder_batch": batch, "search_ms": search, "encoder_workers": workers,
               # beside the best, for reading the ratios: each setting's own figure
               **{f"encoder_batched_qps_{name}": raw["encoder_batched_qps"]
                  for name, raw in raws.items()}}
    print(corpus.name, {k: round(v, 2) for k, v in figures.items()}, flush=True)
    return figures


def serve_and_load(index: Path, checkpoint: Path, args: argparse.Namespace, queries: list[str],
                   clients: tuple[int, ...], name: str, labels: dict,
                   settings: dict[str, str] | None = None, modes: tuple[str | None, ...] = (None,),
                   repeats: int = 1) -> tuple[list[dict], dict[str, float], dict[str, float]]:
    """The runs labelled `labels` against one fresh server (XMR_* `settings`, log server-NAME.log):
    each search mode (None: the service's default; "image-to-text": images) side by side at each
    client count, in each of `repeats`; its memory after; with hybrid, `signals_found` first."""
    served = server(index, checkpoint, args.work / f"server-{name}.log", settings)
    try:
        items = httpx.get(f"{served.url}/v1/info").json()["items"]["image"]
        signals = signals_found(served.url, queries, name) if "hybrid" in modes else {}
        targets = {mode: Target.images(f"{name}-image", served, args.data, K, args.work)
                   if mode == "image-to-text" else
                   Target.searches(f"{name}-{mode}", served, queries, K, args.work, mode=mode)
                   for mode in modes}
        runs = [load_run(targets[mode], n, args,
                         {"mode": mode, "repeat": repeat, **labels, "items": items})
                for repeat in range(repeats) for n in clients for mode in modes]
        return runs, served.memory_mb(), signals
    finally:
        served.stop()


def signals_found(url: str, queries: list[str], name: str) -> dict[str, float]:
    """Per signal, the share of hybrid hits it scored (explain) for the first 50 queries. The
    signals hybrid adds must each score some hit; the item vectors may score none where they are
    far from every query (the synthetic rows against the OpenMoji texts, ranked exactly)."""
    hits = [hit["signals"] for q in queries[:50] for hit in httpx.post(
        f"{url}/v1/search/text-to-image",
        json={"text": q, "k": K, "mode": "hybrid", "explain": True}).json()["results"]]
    found = {signal: sum(h.get(signal) is not None for h in hits) / len(hits)
             for signal in ("vector", "caption", "lexical")}
    if not (found["caption"] and found["lexical"]):
        raise RuntimeError(f"{name}: a signal scored no hybrid hit: {found}")
    return found


def load_run(target: Target, clients: int, args: argparse.Namespace, labels: dict) -> dict:
    """A warm-up, then the measured wrk run (`bench.harness.measure`), with the encoder as it
    ran inside the server over the measured run (means per batch), beside the raw one."""
    harness.warm_up(target, clients, args.warmup, 7 * clients)
    before = encoder_counters(target.server.url)
    run = {**labels, **harness.measure(target, clients, args.seconds, 31 * clients)}
    rows, batches, seconds = (encoder_counters(target.server.url) - before).tolist()
    run.update(mean_batch=rows / max(1.0, batches), busy_cores=run["server_cpu_ms"] * run["qps"]
               / 1000, server_encode_ms=1000 * seconds / max(1.0, batches))
    return harness.show(run)


def runtime_ab(args: argparse.Namespace, queries: list[str]) -> dict:
    """`--runtimes`: the text encoder on each runtime, interleaved in every repeat: texts/s at
    batch 1 and 32, one worker and the service's workers (one 1-thread worker per core), in this
    process; then a fresh server per runtime and repeat at 1 and 32 clients. The checkpoint is
    copied into --work, so its ONNX export is written there, not beside yours."""
    from models.inference import Encoder
    from service.settings import Settings

    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(shutil.copy(args.checkpoint, args.work / "checkpoint.pt"))
    workers = Settings().encoder_worker_count
    encoders = {name: Encoder.load(checkpoint, "cpu", 1, name) for name in args.runtimes}
    assert [(e.text_runtime, e.image_runtime) for e in encoders.values()] == [  # graphs made
        (name, "torch" if name == "torch" else "onnx") for name in args.runtimes], "fell back"
    encoder_runs, server_runs = [], []
    for repeat, (name, encoder), (batch, n) in itertools.product(
            range(args.repeats), encoders.items(), ((1, 1), (32, 1), (1, workers), (32, workers))):
        rate, cpu = concurrent_texts_per_s(encoder, queries, batch, args.seconds / 4, n)
        encoder_runs.append({"runtime": name, "repeat": repeat, "batch": batch, "workers": n,
                             "texts_per_s": rate, "cpu_ms_per_text": 1000 * cpu})
        print(json.dumps(encoder_runs[-1]), flush=True)
    for repeat, name, n in itertools.product(range(args.repeats), args.runtimes, args.processes):
        setting = name if n == 1 else f"{name}, {n} processes"  # its column in the report
        server_runs += serve_and_load(args.index, checkpoint, args, queries, (1, 32), setting,
                                      {"runtime": setting, "repeat": repeat},
                                      {"XMR_ENCODER_RUNTIME": name, "XMR_WORKERS": str(n)},
                                      modes=(None, "image-to-text"))[0]
    quality = {name: ranking_quality(checkpoint, args, name) for name in args.runtimes}
    return {"command": harness.command("bench.service_bench"), "machine": harness.machine(),
            "load_average": harness.load_average(), "load_generator": harness.load_generator(),
            "seconds": args.seconds, "warmup": args.warmup, "repeats": args.repeats,
            "encoder": encoder_runs, "service": server_runs, "quality": quality}


def ranking_quality(checkpoint: Path, args: argparse.Namespace, runtime: str) -> dict:
    """`xmr eval --runtime` on the test split: what a runtime changes in the ranking."""
    out = args.work / f"eval-{runtime}.json"
    subprocess.run([sys.executable, "-m", "xmr", "eval", "--checkpoint", str(checkpoint),
                    "--data", str(args.data), "--cache", str(args.cache), "--runtime", runtime,
                    "--json", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    return {"subgroup_map": report["avg_map"], "keyword_map": report["keywords"]["map"],
            "keyword_success_at_10": report["keywords"]["success_at_10"]}


def main() -> int:
    # --index: the OpenMoji index (built from --data, reading --cache, when there is none)
    parser = arguments(__doc__, "checkpoint", "data", "index", "cache", work="bench-service",
                       seconds=(20, "per measured run"), warmup=(3, "per run, not counted"),
                       synthetic=100_000, repeats=(
                           3, "of each run, the modes (or runtimes) interleaved in each"))
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, help="instead: the "
                        "encoders on these runtimes, side by side (runtimes.*)")
    parser.add_argument("--processes", nargs="+", type=int, default=[1], help="with --runtimes:"
                        " serve each runtime with each of these numbers of server processes")
    parser.add_argument("--modes", nargs="+", choices=("vector", "hybrid", "lexical"),
                        default=["vector", "hybrid"], help="text search modes, side by side")
    args = parser.parse_args()
    if args.runtimes:
        harness.publish(args, "runtimes", lambda: runtime_ab(args, queries_of(args.data)),
                        service_report.runtimes_markdown, service_report.runtimes_figure)
    else:
        harness.publish(args, "service", lambda: run(args), service_report.markdown,
                        service_report.figure)
    return 0


def run(args: argparse.Namespace) -> dict:
    """Each corpus served in each mode beside its raw figures, its index's recall, the goals."""
    from models.checkpoint import checkpoint_id
    from models.inference import resolve_device
    from service.settings import Settings

    args.work.mkdir(parents=True, exist_ok=True)
    ckpt_id = checkpoint_id(args.checkpoint)
    corpora, dim = prepare_corpora(args, ckpt_id)
    device = resolve_device(Settings().device)
    result: dict = {
        "command": harness.command("bench.service_bench"),
        "load_average_before": harness.load_average(),
        "machine": f"{harness.machine()}; the encoder on {device}, text queries on"
                   f" {Settings().encoder_runtime} (XMR_ENCODER_RUNTIME)",
        "load_generator": harness.load_generator(), "seconds": args.seconds, "signals": {},
        "warmup": args.warmup, "repeats": args.repeats, "runs": [], "memory": {}, "recall": {}}
    for corpus in corpora:
        raw = reference(corpus, args, ckpt_id, dim, Settings().batch_max_size)
        runs, result["memory"][corpus.name], result["signals"][corpus.name] = serve_and_load(
            corpus.index, args.checkpoint, args, queries_of(args.data), CLIENTS,
            corpus.name, {"corpus": corpus.name, "index_type": corpus.index_type, **raw},
            modes=tuple(args.modes), repeats=args.repeats)
        result["runs"] += runs
        if corpus.exact is not None:
            result["recall"][corpus.name] = measured_apart(
                recall_figures, args.checkpoint, args.data, corpus.exact, corpus.index)
    result["load_average_after"] = harness.load_average()
    return {**result, "goals": service_report.goals(result)}


if __name__ == "__main__":
    raise SystemExit(main())
