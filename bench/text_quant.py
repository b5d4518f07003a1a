"""The text query graph in float and its two 8-bit copies (models.onnx_quant: `onnx`,
`onnx-int8`, `onnx-int8-static`), side by side in this process:

- speed: texts/s of each graph alone (tokenised beforehand) on batches of 1, 8 and 32 real
  OpenMoji queries, on 1 and 2 ONNX Runtime intra-op threads; the graphs interleaved in every
  repeat, medians reported;
- one query, one vector: the rule of tests/inference/test_determinism.py (each of 64 queries
  alone and inside 20 random batches of 32 others; the least cosine between its vectors);
- ranking: `xmr eval --runtime` on the OpenMoji test split, beside torch's.

    python -m bench.text_quant

writes bench/results/text_quant.json, .md and .png. The checkpoint is copied into --work, so
its graphs are written there, not beside yours.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import harness, report
from bench.harness import ROOT, arguments
from bench.service_corpora import queries_of

RUNTIMES = ("onnx", "onnx-int8", "onnx-int8-static")
BATCHES, THREADS = (1, 8, 32), (1, 2)
CALLS = {1: 96, 8: 24, 32: 8}  # calls per measured pass at each batch size
RULE_QUERIES, RULE_ROUNDS = 64, 20


def speed(checkpoint: Path, queries: list[str], repeats: int) -> list[dict]:
    """One row per repeat, runtime, threads and batch size: texts/s of the graph alone."""
    from models import onnx_graphs
    from models.inference import QUANT, Encoder
    from models.onnx_text import feed, onnx_path

    encoder = Encoder.load(checkpoint, "cpu", runtime="onnx")
    tokenize = encoder.onnx_text.minilm.inputs
    rng = random.Random(0)
    runs = []
    for threads in THREADS:
        sessions = {name: onnx_graphs.session(onnx_path(checkpoint, QUANT.get(name)), threads)
                    for name in RUNTIMES}
        for batch in BATCHES:
            feeds = [feed(tokenize(rng.sample(queries, batch))) for _ in range(CALLS[batch])]
            for session in sessions.values():
                for inputs in feeds[:3]:
                    session.run(None, inputs)  # warm-up
            for repeat in range(repeats):
                for name, session in sessions.items():
                    start = time.perf_counter()
                    for inputs in feeds:
                        session.run(None, inputs)
                    seconds = time.perf_counter() - start
                    runs.append({"runtime": name, "threads": threads, "batch": batch,
                                 "repeat": repeat, "texts_per_s": batch * len(feeds) / seconds})
                    print(json.dumps(runs[-1]), flush=True)
    return runs


def batch_independence(checkpoint: Path, runtime: str, queries: list[str]) -> float:
    """The least cosine between a query's vector alone and in a batch (the determinism rule)."""
    from models.inference import Encoder

    encoder = Encoder.load(checkpoint, "cpu", runtime=runtime)  # type: ignore[arg-type]
    assert encoder.text_runtime == runtime, f"{runtime} fell back"
    rng = random.Random(2)
    picked = rng.sample(queries, RULE_QUERIES + 2 * RULE_ROUNDS)
    mine, others = picked[:RULE_QUERIES], picked[RULE_QUERIES:]
    alone = {query: encoder.encode_texts([query])[0] for query in mine}
    worst = 1.0
    for round_ in range(RULE_ROUNDS):
        rng.shuffle(mine)
        for half, other in zip((mine[:32], mine[32:]), others[2 * round_:], strict=False):
            batch = [*half, other]
            rng.shuffle(batch)
            for text, vector in zip(batch, encoder.encode_texts(batch), strict=True):
                if text in alone:
                    worst = min(worst, float(vector @ alone[text]))
    return worst


def ranking(checkpoint: Path, args: Any, runtime: str) -> dict[str, float]:
    """`xmr eval --runtime` on the test split."""
    out = args.work / f"eval-{runtime}.json"
    subprocess.run([sys.executable, "-m", "xmr", "eval", "--checkpoint", str(checkpoint),
                    "--data", str(args.data), "--cache", str(args.cache), "--runtime", runtime,
                    "--json", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    subgroup = report["levels"]["subgroup"]
    return {"subgroup_map": subgroup["avg_map"], "subgroup_i2t_map": subgroup["i2t_map"],
            "subgroup_t2i_map": subgroup["t2i_map"], "keyword_map": report["keywords"]["map"],
            "keyword_success_at_10": report["keywords"]["success_at_10"]}


def medians(result: dict) -> dict[tuple[str, int, int], float]:
    groups: dict[tuple[str, int, int], list[float]] = {}
    for run in result["speed"]:
        key = (run["runtime"], run["threads"], run["batch"])
        groups.setdefault(key, []).append(run["texts_per_s"])
    return {key: statistics.median(values) for key, values in groups.items()}


def markdown(result: dict) -> str:
    rates = medians(result)
    header = ["intra-op threads", "batch", *RUNTIMES, *(f"{name} / onnx" for name in RUNTIMES[1:])]
    rows = []
    for threads in THREADS:
        for batch in BATCHES:
            found = [rates[(name, threads, batch)] for name in RUNTIMES]
            rows.append([str(threads), str(batch), *(f"{rate:.0f}" for rate in found),
                         *(f"{rate / found[0]:.2f}x" for rate in found[1:])])
    return report.render("text_quant", **result, header=header, rows=rows)


def figure(result: dict) -> Any:
    rates = medians(result)
    fig, axes = harness.pyplot().subplots(1, len(THREADS), figsize=(11, 4), sharey=True)
    for ax, threads in zip(axes, THREADS, strict=True):
        for i, name in enumerate(RUNTIMES):
            ax.bar([j + 0.27 * i for j in range(len(BATCHES))],
                   [rates[(name, threads, batch)] for batch in BATCHES], width=0.27, label=name)
        ax.set_xticks([j + 0.27 for j in range(len(BATCHES))], [f"batch {b}" for b in BATCHES])
        ax.set_title(f"{threads} intra-op thread{'s' if threads > 1 else ''}")
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("texts/s (median)")
    axes[0].legend()
    return fig


def main() -> int:
    parser = arguments(__doc__, "checkpoint", "data", "cache", work="bench-text-quant",
                       repeats=7)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(shutil.copy(args.checkpoint, args.work / "checkpoint.pt"))
    queries = queries_of(args.data)
    load = harness.load_average()
    independence = {name: batch_independence(checkpoint, name, queries)
                    for name in ("torch", *RUNTIMES)}  # also makes every graph
    runs = speed(checkpoint, queries, args.repeats)
    quality = {name: ranking(checkpoint, args, name) for name in ("torch", *RUNTIMES)}
    result = {"command": harness.command("bench.text_quant"), "machine": harness.machine(),
              "load_average": load, "repeats": args.repeats, "speed": runs,
              "batch_independence": independence, "ranking": quality,
              "calls": {str(k): v for k, v in CALLS.items()}}
    harness.write_results(args.out, "text_quant", result, markdown(result), figure(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
