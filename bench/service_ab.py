"""Service A/B: the same text-to-image load against `xmr serve` under several settings,
interleaved and repeated, so that settings are compared side by side on a noisy machine.

    flock /work/heavy.lock nice -n 10 .venv/bin/python bench/service_ab.py \\
        --checkpoint artifacts/runs/default/checkpoint.pt --data artifacts/data/openmoji \\
        --index artifacts/indexes/default

Each repeat runs every variant once, in order, each against a fresh server: 1 client, then 32
clients (closed loop, k=10, OpenMoji texts; the load generator of bench/service_bench.py).
Writes bench/results/service_ab.json, .md and .png with the median and range per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import service_bench as sb  # noqa: E402  (the server and load generator of the main bench)

OUT = ROOT / "bench" / "results"
VARIANTS = {  # name: the server's environment
    "one worker, 1 thread (before)": {"XMR_ENCODER_WORKERS": "1"},
    "one worker, 2 threads (a team across the cores)": {"XMR_ENCODER_WORKERS": "1",
                                                        "XMR_ENCODER_THREADS": "2"},
    "a 1-thread worker per core (default)": {},
}
CLIENTS = (1, 32)


def one_run(args: argparse.Namespace, env: dict[str, str], queries: list[str]) -> dict:
    server = sb.Server(args.index, args.checkpoint, args.work / "server-ab.log", env)
    try:
        out = {}
        for clients in CLIENTS:
            before = sb.encoder_counters(server.url)
            figures = asyncio.run(sb.load(server.url, queries, clients, args.seconds, 2))
            batches = sb.encoder_figures_between(before, sb.encoder_counters(server.url))
            out[clients] = {"qps": figures["qps"], "p50_ms": figures["p50_ms"],
                            "mean_batch": batches["mean_batch"]}
        return out
    finally:
        server.stop()


def summary(runs: list[dict]) -> dict:
    out = {}
    for clients in CLIENTS:
        for key in ("qps", "p50_ms", "mean_batch"):
            values = [run[clients][key] for run in runs]
            out[f"{clients}_{key}"] = {"median": statistics.median(values),
                                       "min": min(values), "max": max(values)}
    return out


def report(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["# Service A/B: encoder workers and threads", "",
             f"Command: `{result['command']}`  ",
             f"{result['repeats']} repeats, variants interleaved, each run against a fresh "
             f"server: {result['seconds']:.0f} s measured after 2 s warm-up, closed loop, k=10, "
             "OpenMoji texts, server and load generator on the same 2 cores. Load average "
             f"before {sb.fmt_load(result['load_before'])}, after "
             f"{sb.fmt_load(result['load_after'])}. Median (min-max) per variant.", "",
             "| variant | QPS, 32 clients | mean encoder batch, 32 clients | p50 ms, 1 client |",
             "|---|---:|---:|---:|"]
    for name, s in result["summary"].items():
        cells = [f"{s[key]['median']:.1f} ({s[key]['min']:.1f}-{s[key]['max']:.1f})"
                 for key in ("32_qps", "32_mean_batch", "1_p50_ms")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (OUT / "service_ab.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    names = list(result["runs"])
    for ax, (clients, key, title) in zip(axes, ((32, "qps", "QPS at 32 clients"),
                                               (1, "p50_ms", "p50 ms at 1 client")),
                                         strict=True):
        ax.boxplot([[run[str(clients)][key] for run in result["runs"][name]] for name in names])
        ax.set_xticks(range(1, len(names) + 1), [n.split(" (")[0] for n in names], fontsize=7)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(OUT / "service_ab.png", dpi=120)


def main() -> int:
    parser = sb.server_arguments(__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    queries = sb.queries_of(args.data)
    result: dict = {"command": " ".join([f"nice -n {os.nice(0)}", Path(sys.executable).name,
                                         *sys.argv]),
                    "load_before": os.getloadavg(), "repeats": args.repeats,
                    "seconds": args.seconds, "runs": {name: [] for name in VARIANTS}}
    for repeat in range(args.repeats):
        for name, env in VARIANTS.items():
            run = one_run(args, env, queries)
            result["runs"][name].append({str(k): v for k, v in run.items()})
            print(repeat, name, json.dumps(run), flush=True)
    result["load_after"] = os.getloadavg()
    result["summary"] = {name: summary([{int(k): v for k, v in run.items()} for run in runs])
                         for name, runs in result["runs"].items()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "service_ab.json").write_text(json.dumps(result, indent=1) + "\n")
    report(result)
    print((OUT / "service_ab.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
