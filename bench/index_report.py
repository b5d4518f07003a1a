"""The index benchmark's report: the fastest index at the recall target per size and query
set, the table of runs and neighbour profiles, and the recall-against-speed plot of
bench/results/index.*."""

from __future__ import annotations

from itertools import groupby, product
from typing import Any

from bench.harness import pyplot
from bench.report import render


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


def fastest(runs: list[dict]) -> list[tuple[str, int, dict]]:
    """(queries, n, the fastest index at recall@10 >= 0.95, else the closest) per group."""
    out = []
    for (queries, n), group in groupby(runs, lambda r: (r["queries"], r["n"])):
        rest = list(group)[1:]  # the first: Flat
        ok = [r for r in rest if r["recall_at_10"] >= 0.95]
        out.append((queries, n, max(ok or rest,
                                    key=lambda r: r["qps_single" if ok else "recall_at_10"])))
    return out


def markdown(doc: dict) -> str:
    return render("index", **doc, fastest=fastest(doc["runs"]))
