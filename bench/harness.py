"""What every benchmark shares: the command that reproduces a run, the machine it ran on, the
results writer (JSON + markdown + PNG), a server in its own process, and the load on it: wrk
with bench/wrk.lua, one closed-loop load generator for every served figure."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import multiprocessing
import os
import platform
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from models.data.corpus import read_corpus

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# where `make demo-artifacts` puts each artifact, under artifacts/
DEMO = {"checkpoint": "runs/default/checkpoint.pt", "data": "data/openmoji", "cache": "cache",
        "index": "indexes/default"}
K = 10  # hits per search in the served benchmarks
CLIENTS = (1, 8, 32)  # their concurrent clients


# -- describing a run ---------------------------------------------------------------------------
def command(module: str, argv: Sequence[str] | None = None) -> str:
    """The command line that reproduces this run, written relative to the repository root:
    `python -m bench.NAME ARGS` (behind `nice -n N` when it ran niced)."""
    args = [relative(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    niceness = os.nice(0)
    return " ".join([*(["nice", "-n", str(niceness)] if niceness else []),
                     "python", "-m", module, *args])


def relative(arg: str) -> str:
    """A path under the checkout relative to it; an absolute path elsewhere from its `artifacts/`
    part on: no command written to bench/results/ names a directory of the machine it ran on."""
    flag, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    path = Path(value)
    if path.is_absolute():
        if path.is_relative_to(ROOT):
            value = str(path.relative_to(ROOT)) or "."
        elif "artifacts" in path.parts:
            value = str(Path(*path.parts[path.parts.index("artifacts"):]))
    return f"{flag}{eq}{value}"


def machine() -> str:
    """Cores, processor and Python; where torch is loaded, its threads and GPU (or none)."""
    out = (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
           f"Python {platform.python_version()}")
    torch = sys.modules.get("torch")
    gpu = torch.cuda.get_device_name() if torch and torch.cuda.is_available() else "no GPU"
    return out + (f", {torch.get_num_threads()} torch thread(s), {gpu}" if torch else "")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the machine was around a run."""
    return [round(value, 2) for value in os.getloadavg()]


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """The seconds `fn(*args, **kwargs)` took, and what it returned."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def measured_apart(measurement: Callable[..., Any], *args: Any) -> Any:
    """Run one measurement in a fresh interpreter: torch and FAISS each bring an OpenMP runtime,
    and a process that has used both (one that built indexes, say) measures either too slow."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measurement, *args).result()


def medians(runs: list[dict], by: Sequence[str], figures: Sequence[str]) -> list[dict]:
    """One row per distinct value of the `by` labels, in the order they first come: the first
    run's labels, with the median over its repeats of each of `figures`."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(tuple(run.get(key) for key in by), []).append(run)
    return [{**group[0], **{name: statistics.median(r[name] for r in group) for name in figures}}
            for group in groups.values()]


def mixture(n: int, dim: int, centres: int, spread: float, seed: int, offset: float = 0.0
            ) -> np.ndarray:
    """n unit vectors: a random unit centre each (of `centres`, the same for every seed) plus
    isotropic noise of norm ~spread, renormalised: clustered like learned embeddings. `offset`
    adds a direction shared by all centres (learned embeddings live in a cone: random pairs
    have cosine ~offset^2 / (1 + offset^2), not 0)."""
    gen = np.random.default_rng(0)
    shared = unit(gen.standard_normal((1, dim)))
    means = unit(gen.standard_normal((centres, dim)) / np.sqrt(dim) + offset * shared)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        rows = means[rng.integers(0, centres, m)]
        noise = rng.standard_normal((m, dim), dtype=np.float32) * (spread / np.sqrt(dim))
        out[start:start + m] = unit(rows + noise)
    return out


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def arguments(doc: str, *artifacts: str, work: str | None = None, renders: bool = True,
              **numbers: float | tuple[float, str]) -> argparse.ArgumentParser:
    """A benchmark's parser: its docstring as help, --out (default bench/results/), --render-only
    where it `renders` (see `publish`); for each of `artifacts` (checkpoint, data, cache, index),
    that path of the demo artifacts; given `work`, --work (artifacts/WORK); an option for each
    of `numbers` (`repeats=3`, or `seconds=(20, "per measured run")`) of its default's type."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in artifacts:
        parser.add_argument(f"--{name}", type=Path, default=ROOT / "artifacts" / DEMO[name],
                            help=f"default: artifacts/{DEMO[name]}")
    if work is not None:
        parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / work,
                            help=f"what the run builds, installs and logs (artifacts/{work})")
    for name, value in numbers.items():
        default, about = value if isinstance(value, tuple) else (value, "")
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                            help=f"{about}{'; ' if about else ''}default: {default}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    if renders:
        parser.add_argument("--render-only", action="store_true", help="measure nothing: "
                            "write the markdown and plot again from the JSON under --out")
    return parser


# -- writing results ----------------------------------------------------------------------------
def pyplot() -> Any:
    """matplotlib.pyplot on the file-only backend (benchmarks run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_results(out: Path, name: str, result: dict | None, markdown: str,
                  figure: Figure | None = None) -> None:
    """OUT/NAME.json (given a result), OUT/NAME.md and, given a figure, OUT/NAME.png."""
    out.mkdir(parents=True, exist_ok=True)
    if result is not None:
        (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown)
    if figure is not None:
        figure.tight_layout()
        figure.savefig(out / f"{name}.png", dpi=110)
        pyplot().close(figure)


def publish(args: argparse.Namespace, name: str, measure: Callable[[], dict],
            markdown: Callable[[dict], str], figure: Callable[[dict], Figure] | None = None
            ) -> dict:
    """`measure()` written to OUT/NAME.json (before the report, which then cannot lose it), or
    with --render-only that file read back; then its report, OUT/NAME.md (printed) and .png."""
    if args.render_only:
        result = json.loads((args.out / f"{name}.json").read_text())
    else:
        result = measure()
        write_results(args.out, name, result, "")
    report = markdown(result)
    write_results(args.out, name, None, report, figure(result) if figure else None)
    print(report)
    return result


def bars(ax: Any, groups: Sequence[str], series: dict[str, Sequence[float]],
         horizontal: bool = False, ticks: dict | None = None, bar: dict | None = None,
         legend: bool = True, **style: Any) -> None:
    """Grouped bars on `ax`: a group per name in `groups`, in it a bar per series (from the top
    when `horizontal`); `ticks` and `bar` style the group names and the bars, `style` goes to
    ax.set (title, labels, scales, limits); a legend where there are several series."""
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        at = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        (ax.barh if horizontal else ax.bar)(at, values, width, label=label, **(bar or {}))
    (ax.set_yticks if horizontal else ax.set_xticks)(range(len(groups)), groups, **(ticks or {}))
    ax.set(**style)
    if horizontal:
        ax.invert_yaxis()
    if legend and len(series) > 1:
        ax.legend()


# -- a served index -------------------------------------------------------------------------------
class Process:
    """A server in its own process group on loopback, logging to `log`: `argv` ("{port}": a free
    port) run in `cwd`, ready once GET `ready` answers 200 (within `limit_s`)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, ready: str,
                 cwd: Path = ROOT, limit_s: float = 300) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        self.process = subprocess.Popen([arg.replace("{port}", str(self.port)) for arg in argv],
                                        cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited {self.process.returncode}: see {log}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + ready, timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the server did not become ready: see {log}")

    def memory_mb(self) -> dict[str, float]:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
                "peak_rss_mb": int(fields["VmHWM"].split()[0]) / 1024}

    def stop(self) -> None:
        """SIGTERM to its process group (a server's workers too), SIGKILL after 30 s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def server(index: Path, checkpoint: Path, log: Path, settings: dict[str, str] | None = None
           ) -> Process:
    """`xmr serve` on `index` and `checkpoint`, read-only; `settings`: XMR_* variables on top
    of this process's environment."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XMR_READ_ONLY": "true",
           "XMR_LOG_LEVEL": "warning", **(settings or {})}
    env.pop("XMR_API_KEY", None)
    return Process([sys.executable, "-m", "xmr", "serve", "--index", str(index), "--checkpoint",
                    str(checkpoint), "--port", "{port}"], env, log, "/readyz")


@dataclass
class Target:
    """A started server and the load wrk sends it: `requests`, a file of bench/wrk.lua's requests
    ("METHOD\tPATH\tBODY" lines); a good answer is a 200 holding `marker` at least `least`
    times. `engine`: what answers them, for the report."""

    name: str
    server: Process
    requests: Path
    marker: str
    least: int
    engine: str = ""

    @classmethod
    def of(cls, name: str, server: Process, lines: list[str], marker: str, least: int,
           work: Path, engine: str = "") -> Target:
        requests = work / f"{name.replace('/', '-')}.requests"
        requests.write_text("\n".join(lines) + "\n")
        return cls(name, server, requests, marker, least, engine)

    @classmethod
    def searches(cls, name: str, server: Process, queries: list[str], k: int, work: Path,
                 engine: str = "", mode: str | None = None) -> Target:
        """xmr's text-to-image search for each query (in `mode`, else the service's default);
        a good answer holds k scored hits."""
        extra = {} if mode is None else {"mode": mode}
        lines = [f"POST\t/v1/search/text-to-image\t{json.dumps({'text': q, 'k': k, **extra})}"
                 for q in queries]
        return cls.of(name, server, lines, '"score"', k, work, engine)

    @classmethod
    def images(cls, name: str, server: Process, data: Path, k: int, work: Path) -> Target:
        """xmr's image-to-text search (JSON, base64) for 200 of the images of the corpus `data`."""
        files = sorted({data / item.image for item in read_corpus(data).items})
        lines = ["POST\t/v1/search/image-to-text\t" + json.dumps(
            {"image_base64": base64.b64encode(file.read_bytes()).decode(), "k": k})
            for file in random.Random(0).sample(files, min(200, len(files)))]
        return cls.of(name, server, lines, '"score"', k, work)


# -- the load: wrk, one closed-loop generator for every served figure ------------------------------
LUA = Path(__file__).with_name("wrk.lua")


def load_generator() -> str:
    """wrk's version and how it runs, for the reports."""
    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return f"{version.split('[')[0].strip()} on one thread, {relative(str(LUA))}"


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


def wrk(target: Target, clients: int, seconds: int, start: int) -> tuple[dict, float]:
    """One wrk run: `clients` keep-alive connections, each sending its next request when the
    last is answered, cycling the requests from the `start`th; its JSON line (bench/wrk.lua)
    and the CPU seconds wrk itself took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "60s", "-s", str(LUA),
         target.server.url, "--", str(target.requests), target.marker, str(target.least),
         str(start)], check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return json.loads(out.strip().splitlines()[-1]), cpu


def warm_up(target: Target, clients: int, seconds: int, start: int) -> None:
    """A run that is not counted, then the server left to settle."""
    wrk(target, clients, seconds, start)
    settle(target.server.process.pid)


def measure(target: Target, clients: int, seconds: int, start: int) -> dict:
    """A measured run: QPS of good answers, wrk's p50/p99, the server tree's RSS after the load
    and its CPU per answer, wrk's own CPU per answer; the server settles after it."""
    pid = target.server.process.pid
    cpu = usage(pid)[1]
    figures, wrk_cpu = wrk(target, clients, seconds, start)
    rss, server_cpu = usage(pid)
    good = figures["requests"] - figures["bad"]
    settle(pid)
    return {"clients": clients, "qps": good / figures["seconds"], "p50_ms": figures["p50_ms"],
            "p99_ms": figures["p99_ms"], "rss_mb": rss,
            "server_cpu_ms": 1000 * (server_cpu - cpu) / max(good, 1),
            "wrk_cpu_ms": 1000 * wrk_cpu / max(good, 1), "bad": figures["bad"],
            "errors": figures["errors"]}


def show(run: dict) -> dict:
    """Print a finished run as one JSON line (floats to 2 places) as it lands; return it."""
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in run.items()}),
          flush=True)
    return run
