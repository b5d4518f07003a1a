"""Is the GIL what slows the service's encoder workers? Two 1-thread workers encode MiniLM
batches at once, alone and beside a Python thread that holds the GIL a third of the time (as
the event loop does under load), in eager mode and as one TorchScript trace (one call, GIL
released for the whole forward).

    flock /work/heavy.lock nice -n 10 .venv/bin/python bench/gil_probe.py \\
        --checkpoint artifacts/runs/default/checkpoint.pt --data artifacts/data/openmoji

writes bench/results/gil_probe.json, .md and .png. The traced forward is the one MiniLM serves
(models/backbones/text.py); the script checks it against eager output.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from service_bench import queries_of  # noqa: E402

OUT = ROOT / "bench" / "results"
BATCH, WORKERS = 8, 2
Forward = Callable[[tuple[torch.Tensor, ...]], torch.Tensor]


def forwards(checkpoint: Path, texts: list[str]) -> tuple[dict[str, Forward], list, float]:
    """The checkpoint's MiniLM run eagerly and as the backbone serves it (traced), batches of
    its inputs, and the largest difference between the two outputs."""
    from models.backbones.text import MiniLM, hidden_and_pooled
    from models.inference import Encoder

    backbone = Encoder.load(checkpoint).backbones.text
    assert isinstance(backbone, MiniLM), "the probe measures the MiniLM text backbone"
    eager = hidden_and_pooled(backbone.model[0].auto_model)
    trace = backbone.transformer
    assert isinstance(trace, torch.jit.ScriptFunction), "the backbone fell back to eager"
    batches = [backbone.inputs(texts[i:i + BATCH]) for i in range(0, len(texts) - BATCH, BATCH)]
    with torch.no_grad():
        gap = max(float((want - got).abs().max()) for x in batches[:20]
                  for want, got in zip(eager(*x), trace(*x), strict=True))
    return {"eager": lambda x: eager(*x), "traced": lambda x: trace(*x)}, batches, gap


def texts_per_s(forward: Forward, batches: list, seconds: float, busy: bool) -> float:
    counts, stop = [0] * WORKERS, threading.Event()

    def worker(k: int) -> None:
        torch.set_num_threads(1)
        with torch.no_grad():
            end, i = time.perf_counter() + seconds, k
            while time.perf_counter() < end:
                forward(batches[i % len(batches)])
                counts[k] += BATCH
                i += WORKERS

    def python_load() -> None:  # 1 ms of pure Python, then 2 ms asleep
        while not stop.is_set():
            start = time.perf_counter()
            while time.perf_counter() - start < 0.001:
                pass
            time.sleep(0.002)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(WORKERS)]
    side = threading.Thread(target=python_load)
    if busy:
        side.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    if busy:
        side.join()
    return sum(counts) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    fns, batches, gap = forwards(args.checkpoint, queries_of(args.data))
    before = os.getloadavg()
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            for busy in (False, True):
                key = f"{name}, {'beside a busy Python thread' if busy else 'alone'}"
                runs.setdefault(key, []).append(texts_per_s(fn, batches, args.seconds, busy))
                print(key, round(runs[key][-1]), flush=True)
    result = {"command": " ".join([f"nice -n {os.nice(0)}", "python", *sys.argv]),
              "load_before": before, "load_after": os.getloadavg(), "max_abs_gap": gap,
              "batch": BATCH, "workers": WORKERS, "runs": runs,
              "median": {k: statistics.median(v) for k, v in runs.items()}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gil_probe.json").write_text(json.dumps(result, indent=1) + "\n")
    report(result)
    return 0


def report(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = result["median"]
    lines = ["# GIL probe: two 1-thread encoder workers, eager vs one TorchScript trace", "",
             f"Command: `{result['command']}`  ",
             f"MiniLM forward, batches of {result['batch']} OpenMoji texts (padded to the "
             f"longest), {result['workers']} worker threads on 1 torch thread each, median texts/s "
             f"of {len(next(iter(result['runs'].values())))} interleaved repeats. Trace vs "
             f"eager output: max abs difference {result['max_abs_gap']:.1e}. Load average "
             f"{', '.join(f'{v:.2f}' for v in result['load_before'])} before, "
             f"{', '.join(f'{v:.2f}' for v in result['load_after'])} after.", "",
             "| forward | alone | beside a busy Python thread (1 ms of every 3) | kept |",
             "|---|---:|---:|---:|"]
    for name in ("eager", "traced"):
        alone, busy = med[f"{name}, alone"], med[f"{name}, beside a busy Python thread"]
        lines.append(f"| {name} | {alone:.0f} | {busy:.0f} | {busy / alone:.2f} |")
    lines += ["", "The busy thread takes a third of one core of two, so about 0.83 of the "
              "alone figure is what sharing the cores alone would leave; what falls below that "
              "is time the workers spend waiting for the GIL."]
    (OUT / "gil_probe.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    keys = list(med)
    ax.bar(range(len(keys)), [med[k] for k in keys])
    ax.set_xticks(range(len(keys)), [k.replace(", ", "\n") for k in keys], fontsize=7)
    ax.set_ylabel("texts/s (2 workers)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(OUT / "gil_probe.png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
