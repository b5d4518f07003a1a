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
    return next(r for r in everything(result) if r["system"] == system and r["clients"] == clients)


def goals(result: dict) -> list[tuple[str, str, bool]]:
    """(goal, the figures, met) for each of the issue's goals."""
    qps = {s: row(result, s, 32)["qps"] for s in SYSTEMS}
    p50 = {s: row(result, s, 1)["p50_ms"] for s in SYSTEMS}
    return [*((f"32 clients, xmr QPS >= {n}x {peer}'s", f"{qps['xmr']:.0f} vs {qps[peer]:.0f}"
               f" = {qps['xmr'] / qps[peer]:.2f}x", qps["xmr"] >= n * qps[peer])
              for peer, n in (("infinity-emb", 3), ("txtai", 8))),
            *((f"1 client, xmr p50 <= half {peer}'s", f"{p50['xmr']:.1f} vs {p50[peer]:.1f} "
               f"ms = {p50['xmr'] / p50[peer]:.2f}x", p50["xmr"] <= p50[peer] / 2)
              for peer in ("infinity-emb", "txtai"))]


def markdown(result: dict) -> str:
    compared = [*SYSTEMS, *dict.fromkeys(r["system"] for r in result["reference_runs"])]
    return render("peers", **result, everything=everything(result), goals=goals(result),
                  row=lambda system, clients: row(result, system, clients), quick=QUICK,
                  compared=compared, busy=busy, ceiling=ceiling, mid=mid)


def busy(run: dict) -> float:
    """Cores the server and wrk kept busy together."""
    return run["qps"] * (run["server_cpu_ms"] + run["wrk_cpu_ms"]) / 1000


def ceiling(run: dict) -> float:
    return 2000 / (run["server_cpu_ms"] + run["wrk_cpu_ms"])


def mid(span: str) -> float:
    low, _, high = span.partition("-")
    return (float(low) + float(high or low)) / 2


def everything(result: dict) -> list[dict]:
    return result["runs"] + result["reference_runs"]


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
