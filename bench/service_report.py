"""The service benchmark's report: its goals, checked against the figures of the same run,
and the markdown table and plot of bench/results/service.*."""

from __future__ import annotations

import statistics
from typing import Any

from bench.harness import pyplot

CLIENTS = (1, 8, 32)

def markdown(result: dict) -> str:
    """The table of runs, the default index's recall, the goals and the server's memory."""
    lines = [
        "# Service benchmark: text-to-image search over HTTP",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}; server and load generator share it. "
        f"Each run: {result['seconds']:.0f} s measured after {result['warmup']:.0f} s warm-up, "
        "closed loop, k=10, queries drawn from the OpenMoji texts. The service runs with its "
        "defaults (one 1-thread encoder worker per core; search on cores - 1 threads, at least "
        "1); the raw encoder (on the service's text runtime) and search figures are measured "
        "in fresh processes, each the best of the library's default threads, one thread and "
        "(throughput only) the service's workers encoding at once (the goals use the best); "
        "each setting's own throughput is shown beside it for reading the ratios. Load average "
        f"(1, 5, 15 min) before the run: {fmt_load(result['load_average_before'])}; after: "
        f"{fmt_load(result['load_average_after'])}. {load_generator(result['runs'], result)}",
        "",
        "| corpus | index | items | clients | QPS | p50 ms | p99 ms | mean encoder batch | "
        "raw encoder QPS (batch 32, best) | QPS / raw | raw: 1 worker, default threads | "
        "raw: 1 worker, 1 thread | raw: the service's workers | "
        "encoder 1 query ms | search ms | encoder in the server, ms per batch (mean) | "
        "server CPU ms / answer |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        lines.append(
            f"| {run['corpus']} | {run['index_type']} | {run['items']:,} | {run['clients']} | "
            f"{run['qps']:.1f} | "
            f"{run['p50_ms']:.1f} | {run['p99_ms']:.1f} | {run['mean_batch']:.1f} | "
            f"{run['encoder_batched_qps']:.1f} | {run['qps'] / run['encoder_batched_qps']:.2f} |"
            f" {run['encoder_batched_qps_default']:.1f} | {run['encoder_batched_qps_1_thread']:.1f}"
            f" | {run['encoder_batched_qps_workers']:.1f} ({run['encoder_workers']}) |"
            f" {run['encoder_single_ms']:.1f} | {run['search_ms']:.2f} | "
            f"{run['server_encode_ms']:.1f} | {run['server_cpu_ms']:.2f} |")
    lines += ["", "## Recall of the default index", "",
              "The synthetic rows are served with the index type `xmr index build` picks at that "
              "size, what a user serving them gets, and Flat beside it; the price is recall, "
              "measured against the Flat twin. The synthetic rows are a Gaussian mixture, far "
              "from the OpenMoji texts, so those queries rank near-ties (the pessimistic "
              "figure); fresh draws from the mixture have true near neighbours.", ""]
    for corpus, recall in result["recall"].items():
        lines.append(f"- {corpus}: recall@10 against exact search (the Flat twin, same items "
                     f"and ids) {recall['recall_texts']:.3f} for the benchmark's own queries "
                     "(OpenMoji texts through the encoder; true 10th neighbour at cosine "
                     f"{recall['kth_cosine_texts']:.2f} on average), "
                     f"{recall['recall_mixture']:.3f} for fresh draws from the corpus's mixture "
                     f"(cosine {recall['kth_cosine_mixture']:.2f})")
    lines += ["", "## Goals", ""]
    lines += [f"- **{'met' if goal['met'] else 'NOT met'}**: {goal['goal']}: {goal['measured']}"
              for goal in result["goals"]]
    lines += ["", "## Memory of the serving process", ""]
    for corpus, memory in result["memory"].items():
        lines.append(f"- {corpus}: resident {memory['rss_mb']:.0f} MB after the runs, "
                     f"peak {memory['peak_rss_mb']:.0f} MB")
    return "\n".join(lines) + "\n"


def figure(result: dict) -> Any:
    """Throughput and latency against the client count, the raw encoder beside the service."""
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4))
    for corpus in dict.fromkeys(run["corpus"] for run in result["runs"]):
        runs = [run for run in result["runs"] if run["corpus"] == corpus]
        xs = [run["clients"] for run in runs]
        axes[0].plot(xs, [run["qps"] for run in runs], marker="o", label=f"{corpus}: service")
        axes[0].plot(xs, [run["encoder_batched_qps"] for run in runs], linestyle="--",
                     label=f"{corpus}: raw encoder, batch 32")
        axes[1].plot(xs, [run["p50_ms"] for run in runs], marker="o", label=f"{corpus} p50")
        axes[1].plot(xs, [run["p99_ms"] for run in runs], marker="x", linestyle=":",
                     label=f"{corpus} p99")
    for ax, title in zip(axes, ("throughput (queries/s)", "latency (ms)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
        ax.set_xlabel("concurrent clients")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    return fig


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def runtime_rows(result: dict) -> list[tuple[str, dict[str, list[float]]]]:
    """(setting, {runtime: its figure in each repeat}) for the encoder and service rows."""
    rows: dict[str, dict[str, list[float]]] = {}
    for run in result["encoder"]:
        key = f"encoder texts/s, batch {run['batch']}, {run['workers']} worker(s)"
        rows.setdefault(key, {}).setdefault(run["runtime"], []).append(run["texts_per_s"])
    for run in result["service"]:
        for figure, name in (("qps", "QPS"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
            key = f"service {name}, {run['clients']} client(s)"
            rows.setdefault(key, {}).setdefault(run["runtime"], []).append(run[figure])
    return list(rows.items())


def runtimes_markdown(result: dict) -> str:
    """Each setting's median (min-max) over the repeats per runtime, and their ratio."""
    runtimes = list(dict.fromkeys(run["runtime"] for run in result["encoder"]))
    lines = ["# The text encoder on torch and on ONNX Runtime", "",
             f"Command: `{result['command']}`  ",
             f"Machine: {result['machine']}; load average (1, 5, 15 min) after the run: "
             f"{fmt_load(result['load_average'])}. {result['repeats']} repeats, the runtimes "
             "interleaved in each; median (min-max). Encoder rows: texts/s of OpenMoji texts "
             f"for {result['seconds'] / 4:.1f} s per figure in one process, each worker a thread "
             "on one intra-op thread (several workers: the service's setting, one per core). "
             f"Service rows: `xmr serve` with XMR_ENCODER_RUNTIME set, a fresh server per "
             f"runtime and repeat, {result['seconds']:.0f} s measured after "
             f"{result['warmup']:.0f} s warm-up, closed loop, k=10, the OpenMoji index. "
             f"{load_generator(result['service'], result)}", "",
             f"| setting | {' | '.join(runtimes)} | "
             f"{' | '.join(f'{r} / {runtimes[0]}' for r in runtimes[1:])} |",
             "|---|" + "---:|" * (2 * len(runtimes) - 1)]
    for key, values in runtime_rows(result):
        base = statistics.median(values[runtimes[0]])
        ratios = [f"{statistics.median(values[r]) / base:.2f}x" for r in runtimes[1:]]
        lines.append(f"| {key} | {' | '.join(spread(values[r]) for r in runtimes)} | "
                     f"{' | '.join(ratios)} |")
    quality = result.get("quality", {})
    if quality:
        lines += ["", "Ranking on the OpenMoji test split (`xmr eval --runtime`): the text side "
                  "and the keyword queries embedded by each runtime from the raw texts.", "",
                  f"| measure | {' | '.join(quality)} |", "|---|" + "---:|" * len(quality)]
        lines += [f"| {name} | {' | '.join(f'{q[key]:.4f}' for q in quality.values())} |"
                  for key, name in (("subgroup_map", "subgroup avg mAP"),
                                    ("keyword_map", "keyword mAP"),
                                    ("keyword_success_at_10", "keyword success@10"))]
    return "\n".join(lines) + "\n"


def runtimes_figure(result: dict) -> Any:
    """Medians per setting, one bar per runtime: throughputs left, latencies right."""
    rows = runtime_rows(result)
    runtimes = list(dict.fromkeys(run["runtime"] for run in result["encoder"]))
    fig, axes = pyplot().subplots(1, 2, figsize=(12, 4.5))
    for ax, part in zip(axes, ([r for r in rows if "ms" not in r[0]],
                               [r for r in rows if "ms" in r[0]]), strict=True):
        for i, runtime in enumerate(runtimes):
            ax.barh([j + 0.8 * i / len(runtimes) for j in range(len(part))],
                    [statistics.median(v[runtime]) for _, v in part], height=0.8 / len(runtimes),
                    label=runtime)
        ax.set_yticks([j + 0.4 - 0.4 / len(runtimes) for j in range(len(part))],
                      [k for k, _ in part], fontsize=7)
        ax.grid(alpha=0.3, axis="x")
        ax.legend()
    axes[0].set_title("throughput (median)")
    axes[1].set_title("latency, ms (median)")
    return fig


def load_generator(runs: list[dict], result: dict) -> str:
    """What generated the load, what it cost, and whether every answer was good."""
    wrk = [run["wrk_cpu_ms"] for run in runs]
    server = [run["server_cpu_ms"] for run in runs]
    return (f"Load generator: {result['load_generator']} (each connection sends its next "
            "request when the last is answered; only 200s with k scored hits count); it spent "
            f"{min(wrk):.2f}-{max(wrk):.2f} ms of CPU per answer, the server "
            f"{min(server):.2f}-{max(server):.2f} ms. Bad answers or socket errors in any run: "
            f"{sum(run['bad'] + run['errors'] for run in runs)}.")


def fmt_load(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def goals(result: dict) -> list[dict[str, object]]:
    out = []
    for corpus in dict.fromkeys(run["corpus"] for run in result["runs"]):
        runs = {run["clients"]: run for run in result["runs"] if run["corpus"] == corpus}
        top, one = runs[max(runs)], runs[min(runs)]
        ratio = top["qps"] / top["encoder_batched_qps"]
        out.append({"goal": f"{corpus}: QPS at {top['clients']} clients >= 0.8x raw batched "
                            "encoder throughput", "met": ratio >= 0.8,
                    "measured": f"{top['qps']:.1f} vs {top['encoder_batched_qps']:.1f} "
                                f"({ratio:.2f}x)"})
        budget = one["encoder_single_ms"] + one["search_ms"] + 3
        out.append({"goal": f"{corpus}: p50 at 1 client <= encoder + search + 3 ms",
                    "met": one["p50_ms"] <= budget,
                    "measured": f"p50 {one['p50_ms']:.1f} ms vs {one['encoder_single_ms']:.1f}"
                                f" + {one['search_ms']:.2f} + 3 = {budget:.1f} ms (the "
                                "server's own encoder took "
                                f"{one['server_encode_ms']:.1f} ms per query, mean)"})
    for corpus, memory in result["memory"].items():
        if corpus.startswith("synthetic"):
            out.append({"goal": f"{corpus}: resident memory of the server < 1.5 GB",
                        "met": memory["peak_rss_mb"] < 1536,
                        "measured": f"{memory['rss_mb']:.0f} MB resident, "
                                    f"{memory['peak_rss_mb']:.0f} MB peak"})
    return out

