"""Where the CPU goes at 32 clients: the server process against the load generator (this
process), from /proc and process_time over one closed-loop run on OpenMoji. When the server
uses well under all the cores while its encoder workers are busy, they are waiting, not
computing (bench/gil_probe.py says for what).

    flock /work/heavy.lock nice -n 10 .venv/bin/python bench/cpu_split.py \\
        --checkpoint artifacts/runs/default/checkpoint.pt --data artifacts/data/openmoji \\
        --index artifacts/indexes/default

writes bench/results/cpu_split.json, .md and .png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import service_bench as sb  # noqa: E402  (the server and load generator of the main bench)

OUT = ROOT / "bench" / "results"
CLIENTS = 32


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / "bench-service")
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    queries = sb.queries_of(args.data)
    before = os.getloadavg()
    server = sb.Server(args.index, args.checkpoint, args.work / "server-cpu.log")
    try:
        asyncio.run(sb.load(server.url, queries, CLIENTS, 3, 0))  # warm-up
        server0, own0, wall0 = cpu_seconds(server.process.pid), time.process_time(), \
            time.perf_counter()
        run = asyncio.run(sb.load(server.url, queries, CLIENTS, args.seconds, 0))
        server_s = cpu_seconds(server.process.pid) - server0
        own_s, wall = time.process_time() - own0, time.perf_counter() - wall0
    finally:
        server.stop()
    result = {"command": " ".join([f"nice -n {os.nice(0)}", "python", *sys.argv]),
              "cores": os.cpu_count(), "clients": CLIENTS, "qps": run["qps"],
              "server_core_share": server_s / wall, "generator_core_share": own_s / wall,
              "server_cpu_ms_per_request": 1000 * server_s / run["requests"],
              "generator_cpu_ms_per_request": 1000 * own_s / run["requests"],
              "load_before": before, "load_after": os.getloadavg()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cpu_split.json").write_text(json.dumps(result, indent=1) + "\n")
    report(result)
    print((OUT / "cpu_split.md").read_text())
    return 0


def report(r: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (OUT / "cpu_split.md").write_text("\n".join([
        f"# CPU split at {r['clients']} clients (OpenMoji, text-to-image)", "",
        f"Command: `{r['command']}`  ",
        f"{r['cores']} cores; load average {sb.fmt_load(r['load_before'])} before, "
        f"{sb.fmt_load(r['load_after'])} after.", "",
        "| QPS | server, cores used | load generator, cores used | server CPU ms / request "
        "| load generator CPU ms / request |", "|---:|---:|---:|---:|---:|",
        f"| {r['qps']:.0f} | {r['server_core_share']:.2f} | {r['generator_core_share']:.2f} | "
        f"{r['server_cpu_ms_per_request']:.2f} | {r['generator_cpu_ms_per_request']:.2f} |",
    ]) + "\n")
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(["server", "load generator", "idle"],
           [r["server_core_share"], r["generator_core_share"],
            max(0.0, r["cores"] - r["server_core_share"] - r["generator_core_share"])])
    ax.set_ylabel("cores")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(OUT / "cpu_split.png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
