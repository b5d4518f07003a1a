"""The peer benchmark's report: the goals checked against the medians of one run, the table,
the figures beside the issue's quick side-by-side, and the plot of bench/results/peers.*."""

from __future__ import annotations

from typing import Any

from bench.harness import pyplot
from bench.report import render

SYSTEMS = ("xmr", "txtai", "infinity-emb")
# The quick side-by-side that motivated the benchmark: a thread-per-client Python load
# generator on the same two cores, 2 repeats of 15 s, infinity-emb on its torch engine.
QUICK = {"xmr": ("174-195", "19-23"), "txtai": ("29-34", "29-33"),
         "infinity-emb": ("not run", "not run"), "infinity-emb/torch": ("90-95", "30")}


def row(result: dict, system: str, clients: int) -> dict:
    return next(r for r in result["runs"] + result["reference_runs"]
                if r["system"] == system and r["clients"] == clients)


def markdown(result: dict) -> str:
    return render("peers", **result, row=lambda system, clients: row(result, system, clients),
                  systems=SYSTEMS, quick=QUICK, mid=mid)


def mid(span: str) -> float:
    """The middle of a quick-run span ("174-195")."""
    low, _, high = span.partition("-")
    return (float(low) + float(high or low)) / 2


def figure(result: dict) -> Any:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.27
    for i, system in enumerate(SYSTEMS):
        rows = [row(result, system, c) for c in (1, 8, 32)]
        at = [x + (i - 1) * width for x in range(3)]
        left.bar(at, [r["qps"] for r in rows], width, label=system)
        right.bar(at, [r["p50_ms"] for r in rows], width, label=system)
    for axes, title in ((left, "queries/s (higher is better)"),
                        (right, "p50 latency, ms, log scale (lower is better)")):
        axes.set_xticks(range(3), ["1 client", "8 clients", "32 clients"])
        axes.set_title(title)
    right.set_yscale("log")
    left.legend()
    fig.suptitle("Same MiniLM, same queries, same two cores, one load generator (wrk)")
    return fig
