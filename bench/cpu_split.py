"""Where the CPU goes at 32 clients (OpenMoji, text-to-image): the server's threads, by the
name each has in the OS (service.batching.name_os_thread), against the load generator (this
process), from /proc and process_time over one closed-loop run; beside it, the raw encoder's
CPU per text with the service's workers, measured in the same run in a fresh process.

Two bounds follow from CPU alone, whatever the scheduling: the QPS the machine could serve if
no core ever sat idle (cores / CPU per request, server and load generator together), and that
QPS as a share of the raw encoder's throughput, the service benchmark's 0.8x goal. A server
that uses well under all the cores while its workers are busy is waiting, not computing
(bench/gil_probe.py says for what).

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
EVENT_LOOP = "event loop (main thread)"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of `pid`, summed by OS thread name (encoder-0 and
    encoder-1 are one group); the main thread runs the event loop."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            seconds = sb.cpu_seconds(task / "stat")
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
        group = EVENT_LOOP if task.name == str(pid) else name.rstrip("0123456789-_")
        out[group] = out.get(group, 0.0) + seconds
    return out


def split(args: argparse.Namespace) -> dict:
    """One 32-client run: each thread group's CPU and the load generator's, per request."""
    server = sb.Server(args.index, args.checkpoint, args.work / "server-cpu.log")
    try:
        asyncio.run(sb.load(server.url, sb.queries_of(args.data), CLIENTS, 3, 0))  # warm-up
        threads0, own0 = thread_cpu(server.process.pid), time.process_time()
        wall0 = time.perf_counter()
        run = asyncio.run(sb.load(server.url, sb.queries_of(args.data), CLIENTS, args.seconds, 0))
        threads1, own = thread_cpu(server.process.pid), time.process_time() - own0
        wall = time.perf_counter() - wall0
    finally:
        server.stop()
    spent = {name: seconds - threads0.get(name, 0.0) for name, seconds in threads1.items()}
    spent = {name: seconds for name, seconds in spent.items() if seconds > 0}
    spent["load generator (bench process)"] = own
    return {"qps": run["qps"], "requests": run["requests"], "wall_s": wall,
            "cpu_s": dict(sorted(spent.items(), key=lambda kv: -kv[1]))}


def main() -> int:
    parser = sb.server_arguments(__doc__)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from service.settings import Settings

    before, settings = os.getloadavg(), Settings()
    raw = sb.measured_apart("encoder", str(args.checkpoint), str(args.data),
                            str(settings.batch_max_size), str(settings.encoder_worker_count), "1")
    measured = split(args)
    cores = os.cpu_count() or 1
    per_request = {name: 1000 * s / measured["requests"] for name, s in measured["cpu_s"].items()}
    ceiling = cores / (sum(per_request.values()) / 1000)
    result = {"command": " ".join([f"nice -n {os.nice(0)}", "python", *sys.argv]),
              "cores": cores, "clients": CLIENTS, **measured,
              "cpu_ms_per_request": per_request,
              "idle_cores": cores - sum(measured["cpu_s"].values()) / measured["wall_s"],
              "raw_encoder_qps": raw["encoder_batched_qps"],
              "raw_encoder_cpu_ms_per_text": raw["encoder_cpu_ms_per_text"],
              "raw_batch": settings.batch_max_size,
              "raw_workers": settings.encoder_worker_count,
              "qps_ceiling": ceiling, "ceiling_vs_raw": ceiling / raw["encoder_batched_qps"],
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

    rows = [f"| {name} | {r['cpu_s'][name] / r['wall_s']:.2f} | {ms:.2f} |"
            for name, ms in r["cpu_ms_per_request"].items()]
    total = sum(r["cpu_ms_per_request"].values())
    (OUT / "cpu_split.md").write_text("\n".join([
        f"# CPU split at {r['clients']} clients (OpenMoji, text-to-image)", "",
        f"Command: `{r['command']}`  ",
        f"{r['cores']} cores; {r['wall_s']:.0f} s closed loop after 3 s warm-up; load average "
        f"{sb.fmt_load(r['load_before'])} before, {sb.fmt_load(r['load_after'])} after. "
        "Threads are grouped by their OS name (`service.batching.name_os_thread`; OpenMP and "
        "tokenizer threads a worker starts carry its name).", "",
        f"Served: {r['qps']:.0f} QPS; cores left idle: {r['idle_cores']:.2f}.", "",
        "| where | cores used | CPU ms / request |", "|---|---:|---:|",
        *rows, f"| **all** | {total * r['qps'] / 1000:.2f} | **{total:.2f}** |", "",
        f"Raw encoder, measured in the same run in a fresh process ({r['raw_workers']} "
        f"1-thread workers, batches of {r['raw_batch']}, nothing else running): "
        f"{r['raw_encoder_qps']:.0f} texts/s at {r['raw_encoder_cpu_ms_per_text']:.2f} ms of "
        "CPU per text.", "",
        f"Bound from CPU alone: with every core busy all the time, {r['cores']} cores / "
        f"{total:.2f} ms per request = **{r['qps_ceiling']:.0f} QPS, "
        f"{r['ceiling_vs_raw']:.2f}x the raw encoder** (the service benchmark's goal: 0.8x). "
        "Scheduling cannot beat it; only less CPU per request can.",
    ]) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(r["cpu_ms_per_request"])
    ax.barh(names, [r["cpu_ms_per_request"][n] for n in names])
    ax.axvline(r["raw_encoder_cpu_ms_per_text"], color="k", ls="--",
               label="raw encoder, CPU per text")
    ax.set_xlabel("CPU ms per request")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(OUT / "cpu_split.png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
