"""The service benchmark's report: its goals, checked against the figures of the same run,
and the markdown table and plot of bench/results/service.*."""

from __future__ import annotations

import statistics
from typing import Any

from bench.harness import pyplot
from bench.report import render

CLIENTS = (1, 8, 32)

def markdown(result: dict) -> str:
    """The table of runs, the default index's recall, the goals and the server's memory."""
    return render("service", **result)


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
    table = [(key, [spread(values[r]) for r in runtimes],
              [f"{statistics.median(values[r]) / statistics.median(values[runtimes[0]]):.2f}x"
               for r in runtimes[1:]]) for key, values in runtime_rows(result)]
    return render("runtimes", **{"quality": {}, **result}, runtimes=runtimes, table=table)


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

