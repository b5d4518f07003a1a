"""The service benchmark's report: its goals, checked against the figures of the same run,
and the markdown table and plot of bench/results/service.*."""

from __future__ import annotations

import statistics
from typing import Any

from bench import harness
from bench.harness import CLIENTS, pyplot
from bench.report import render

FIGURES = ("qps", "p50_ms", "p99_ms", "mean_batch", "server_encode_ms", "server_cpu_ms")


def medians(runs: list[dict]) -> list[dict]:
    """One row per corpus, search mode and client count: medians over the repeats."""
    return harness.medians(runs, ("corpus", "mode", "clients"), FIGURES)


def ratios(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """Per corpus measured in both modes: hybrid / vector of the 1-client p50 and of the QPS at
    the most clients (medians)."""
    at = {(r["corpus"], r.get("mode"), r["clients"]): r for r in rows}
    top = max(CLIENTS)
    return {corpus: (at[corpus, "hybrid", 1]["p50_ms"] / at[corpus, "vector", 1]["p50_ms"],
                     at[corpus, "hybrid", top]["qps"] / at[corpus, "vector", top]["qps"])
            for corpus in dict.fromkeys(r["corpus"] for r in rows)
            if (corpus, "hybrid", 1) in at and (corpus, "vector", 1) in at}


def markdown(result: dict) -> str:
    """The table of runs (medians per corpus, mode and client count), the modes' ratios, the
    default index's recall, the goals and the server's memory."""
    rows = medians(result["runs"])
    return render("service", **result, rows=rows, ratios=ratios(rows))


def figure(result: dict) -> Any:
    """Throughput and latency against the client count per corpus and mode (medians), the raw
    encoder's batched throughput as a line beside them."""
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4))
    rows = medians(result["runs"])
    for corpus, mode in dict.fromkeys((row["corpus"], row.get("mode")) for row in rows):
        runs = [row for row in rows if (row["corpus"], row.get("mode")) == (corpus, mode)]
        xs, name = [run["clients"] for run in runs], f"{corpus}, {mode or 'default'}"
        axes[0].plot(xs, [run["qps"] for run in runs], marker="o", label=name)
        axes[1].plot(xs, [run["p50_ms"] for run in runs], marker="o", label=f"{name} p50")
        axes[1].plot(xs, [run["p99_ms"] for run in runs], marker="x", linestyle=":",
                     label=f"{name} p99")
    for corpus in dict.fromkeys(row["corpus"] for row in rows):
        axes[0].axhline(next(r for r in rows if r["corpus"] == corpus)["encoder_batched_qps"],
                        linestyle="--", linewidth=0.8, label=f"{corpus}: raw encoder, batch 32")
    for ax, title in zip(axes, ("throughput (queries/s)", "latency (ms)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
        ax.set_xlabel("concurrent clients")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    return fig


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
    return render("runtimes", **result, runtimes=runtimes, rows=runtime_rows(result))


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


def goals(result: dict) -> list[dict[str, object]]:
    """Each goal, met or not, with its figures (medians over the repeats)."""
    out = []
    rows = medians(result["runs"])
    # against the raw encoder and search: vector-only; hybrid has its own goals, its ratios
    for corpus in dict.fromkeys(row["corpus"] for row in rows):
        runs = {row["clients"]: row for row in rows
                if row["corpus"] == corpus and row.get("mode") in (None, "vector")}
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
    for corpus, (p50, qps) in ratios(rows).items():
        out.append({"goal": f"{corpus}: hybrid p50 at 1 client <= 1.3x vector-only",
                    "met": p50 <= 1.3, "measured": f"{p50:.2f}x"})
        out.append({"goal": f"{corpus}: hybrid QPS at {max(CLIENTS)} clients >= 0.8x "
                            "vector-only", "met": qps >= 0.8, "measured": f"{qps:.2f}x"})
    for corpus, memory in result["memory"].items():
        if corpus.startswith("synthetic"):
            out.append({"goal": f"{corpus}: resident memory of the server < 1.5 GB",
                        "met": memory["peak_rss_mb"] < 1536,
                        "measured": f"{memory['rss_mb']:.0f} MB resident, "
                                    f"{memory['peak_rss_mb']:.0f} MB peak"})
    return out

