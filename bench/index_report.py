"""The index benchmark's report: the fastest index at the recall target per size, the table
of runs and neighbour profiles, and the recall-against-speed plot of bench/results/index.*."""

from __future__ import annotations

from typing import Any

from bench.harness import pyplot

DIM = 256


def best_at(runs: list[dict], n: int, target: float) -> dict | None:
    ok = [r for r in runs if r["n"] == n and r["index"] != "Flat" and r["recall_at_10"] >= target]
    return max(ok, key=lambda r: r["qps_single"]) if ok else None


def figure(runs: list[dict], profiles: dict) -> Any:
    """Single-query QPS against recall per size, and the neighbour-cosine profiles."""
    sizes = sorted({r["n"] for r in runs})
    fig, axes = pyplot().subplots(1, len(sizes) + 1, figsize=(5.5 * (len(sizes) + 1), 4.5))
    for ax, n in zip(axes, sizes, strict=False):
        for family, marker in (("IVF", "o-"), ("HNSW", "s-"), ("Flat", "k*")):
            rows = [r for r in runs if r["n"] == n and r["index"].startswith(family)]
            if rows:
                ax.plot([r["recall_at_10"] for r in rows], [r["qps_single"] for r in rows],
                        marker, label=rows[0]["index"].split(" ")[0])
                for r in rows:
                    if " " in r["index"]:
                        ax.annotate(r["index"].split("=")[1], (r["recall_at_10"], r["qps_single"]),
                                    fontsize=7)
        ax.axvline(0.95, color="grey", ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("recall@10 vs exact Flat")
        ax.set_ylabel("single-query QPS")
        ax.set_title(f"n = {n:,}, d = {DIM}")
        ax.legend()
    ax = axes[-1]
    for name, prof in profiles.items():
        ax.hist(prof["nn1"], bins=40, histtype="step", density=True, label=f"{name} 1-NN")
    ax.set_xlabel("cosine to nearest neighbour")
    ax.set_title("neighbour profile")
    ax.legend(fontsize=7)
    return fig


def markdown(doc: dict) -> str:
    lines = ["# Index benchmark", "", f"Command: `{doc['command']}`", "",
             f"Machine: {doc['machine']}; FAISS {doc['faiss']} on the CPU (no GPU here). "
             f"Synthetic data: {doc['data']}. FAISS threads: {doc['threads']}.", ""]
    for n in sorted({r["n"] for r in doc["runs"]}):
        best = best_at(doc["runs"], n, 0.95)
        if best:
            lines.append(f"- n = {n:,}: fastest index with recall@10 >= 0.95: **{best['index']}**"
                         f" recall {best['recall_at_10']:.3f}, {best['qps_single']:.0f} QPS single"
                         f" = **{best['speedup_vs_flat']:.1f}x Flat**, index "
                         f"{best['memory_mb']:.0f} MB")
    job = doc["batch_job"]
    lines += [] if not job else [
              f"- batch job: {job['batch_job_items_per_s']} items/s vs raw encoder "
              f"{job['raw_encoder_items_per_s']} items/s = **{doc['batch_job_vs_encoder']:.2f}x**"
              f" ({job['items']} OpenMoji items, {job['images']} images + {job['texts']} texts, "
              "median of rounds, same process)"]
    lines += ["", "| n | index | recall@10 | QPS single | p50 ms | p99 ms | QPS batch64 |"
              " p50 ms/batch | p99 ms/batch | x Flat | build s | index MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        lines.append(f"| {r['n']:,} | {r['index']} | {r['recall_at_10']:.3f} | "
                     f"{r['qps_single']:.0f} | {r['p50_single_ms']:.2f} | "
                     f"{r['p99_single_ms']:.2f} | "
                     f"{r['qps_batch64']:.0f} | {r['p50_batch64_ms']:.1f} | "
                     f"{r['p99_batch64_ms']:.1f} | {r['speedup_vs_flat']:.1f} | {r['build_s']:.0f}"
                     f" | {r['memory_mb']:.0f} |")
    lines += ["", "Neighbour-cosine profile (medians; the synthetic rows at the real sample's size"
              " and at full size):", "", "| vectors | n | 1-NN | 10-NN | random pair |",
              "|---|---|---|---|---|"]
    for name, p in doc["profiles"].items():
        lines.append(f"| {name} | {p['n']:,} | {p['nn1_median']} | {p['nn10_median']} | "
                     f"{p['random_pair_median']} |")
    lines += ["", "![recall vs speed](index.png)", ""]
    return "\n".join(lines)
