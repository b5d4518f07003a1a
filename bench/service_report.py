"""The service and runtimes reports: the service's goals, checked against the figures of the
same run, and each report's markdown and plot."""

from __future__ import annotations

import statistics
from typing import Any

from bench import harness
from bench.harness import CLIENTS, bars, pyplot
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
    rows = medians(result["runs"])
    return render("service", **result, rows=rows, ratios=ratios(rows))


def figure(result: dict) -> Any:
    """QPS, p50 and p99 per client count, corpus and mode (medians); the raw encoder as lines."""
    fig, axes = pyplot().subplots(1, 3, figsize=(16, 4.5))
    rows = {(f"{r['corpus']}, {r.get('mode') or 'default'}", r["clients"]): r
            for r in medians(result["runs"])}
    for i, (corpus, row) in enumerate({r["corpus"]: r for r in rows.values()}.items()):
        axes[0].axhline(row["encoder_batched_qps"], color=f"C{2 * i}", linestyle="--",
                        linewidth=0.8, label=f"{corpus}: raw encoder, batch 32")
    for ax, key, title in zip(axes, ("qps", "p50_ms", "p99_ms"),
                              ("queries/s", "p50 ms (log)", "p99 ms (log)"), strict=True):
        bars(ax, [f"{c} client(s)" for c in CLIENTS], {s: [rows[s, c][key] for c in CLIENTS]
             for s in dict.fromkeys(s for s, _ in rows)}, legend=False, title=title,
             yscale="linear" if key == "qps" else "log")
    axes[2].legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="upper left",
                   bbox_to_anchor=(1, 1))
    return fig


def runtime_rows(result: dict) -> list[tuple[str, dict[str, list[float]]]]:
    """(setting, {runtime: its figure in each repeat}) for the encoder and service rows."""
    rows: dict[str, dict[str, list[float]]] = {}
    for run in result["encoder"]:
        key = f"encoder texts/s, batch {run['batch']}, {run['workers']} worker(s)"
        rows.setdefault(key, {}).setdefault(run["runtime"], []).append(run["texts_per_s"])
    for run in result["service"]:
        search = f" {run['mode']}" if run.get("mode") else ""  # image-to-text; text: default
        for figure, name in (("qps", "QPS"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
                             ("busy_cores", "busy cores")):
            key = f"service{search} {name}, {run['clients']} client(s)"
            rows.setdefault(key, {}).setdefault(run["runtime"], []).append(run[figure])
    return list(rows.items())


def runtimes_markdown(result: dict) -> str:
    runtimes = list(dict.fromkeys(r["runtime"] for r in result["encoder"] + result["service"]))
    return render("runtimes", **result, runtimes=runtimes, rows=runtime_rows(result))


def runtimes_figure(result: dict) -> Any:
    """Medians per setting, one bar per runtime: throughputs left, latencies right."""
    runtimes = list(dict.fromkeys(r["runtime"] for r in result["encoder"] + result["service"]))
    fig, axes = pyplot().subplots(1, 2, figsize=(12, 4.5))
    for ax, latency, title in zip(axes, (False, True), ("throughput (median)",
                                                        "latency, ms (median)"), strict=True):
        part = [(key, v) for key, v in runtime_rows(result)
                if ("ms" in key) == latency and "busy" not in key]  # busy cores: the table's
        bars(ax, [key for key, _ in part], {r: [statistics.median(v.get(r, [0])) for _, v in part]
             for r in runtimes}, horizontal=True, ticks={"fontsize": 7}, title=title)
    return fig


def goals(result: dict) -> list[dict[str, object]]:
    """Each goal, met or not, with its figures (medians over the repeats)."""
    out: list[dict[str, object]] = []
    rows = medians(result["runs"])

    def goal(text: str, met: bool, measured: str) -> None:
        out.append({"goal": text, "met": met, "measured": measured})

    # against the raw encoder and search: vector-only; hybrid has its own goals, its ratios
    for corpus in dict.fromkeys(row["corpus"] for row in rows):
        runs = {row["clients"]: row for row in rows
                if row["corpus"] == corpus and row.get("mode") in (None, "vector")}
        top, one = runs[max(runs)], runs[min(runs)]
        ratio = top["qps"] / top["encoder_batched_qps"]
        goal(f"{corpus}: QPS at {top['clients']} clients >= 0.8x raw batched encoder throughput",
             ratio >= 0.8, f"{top['qps']:.1f} vs {top['encoder_batched_qps']:.1f} ({ratio:.2f}x)")
        budget = one["encoder_single_ms"] + one["search_ms"] + 3
        goal(f"{corpus}: p50 at 1 client <= encoder + search + 3 ms", one["p50_ms"] <= budget,
             f"p50 {one['p50_ms']:.1f} ms vs {one['encoder_single_ms']:.1f} + "
             f"{one['search_ms']:.2f} + 3 = {budget:.1f} ms (the server's own encoder took "
             f"{one['server_encode_ms']:.1f} ms per query, mean)")
    for corpus, (p50, qps) in ratios(rows).items():
        goal(f"{corpus}: hybrid p50 at 1 client <= 1.3x vector-only", p50 <= 1.3, f"{p50:.2f}x")
        goal(f"{corpus}: hybrid QPS at {max(CLIENTS)} clients >= 0.8x vector-only", qps >= 0.8,
             f"{qps:.2f}x")
    for corpus, memory in result["memory"].items():
        if corpus.startswith("synthetic"):
            goal(f"{corpus}: resident memory of the server < 1.5 GB", memory["peak_rss_mb"] < 1536,
                 f"{memory['rss_mb']:.0f} MB resident, {memory['peak_rss_mb']:.0f} MB peak")
    return out

