"""What every benchmark shares: the command that reproduces a run, the machine it ran on, the
results writer (JSON + markdown + PNG), and a served index under closed-loop HTTP load."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# where `make demo-artifacts` puts each artifact, under artifacts/
DEMO = {"checkpoint": "runs/default/checkpoint.pt", "data": "data/openmoji", "cache": "cache",
        "index": "indexes/default"}


# -- describing a run ---------------------------------------------------------------------------
def command(module: str, argv: Sequence[str] | None = None) -> str:
    """The command line that reproduces this run, written relative to the repository root:
    `python -m bench.NAME ARGS` (behind `nice -n N` when it ran niced)."""
    args = [relative(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    niceness = os.nice(0)
    return " ".join([*(["nice", "-n", str(niceness)] if niceness else []),
                     "python", "-m", module, *args])


def relative(arg: str) -> str:
    """A path under the checkout relative to it; an absolute path elsewhere from its
    `artifacts/` part on (the layout `make demo-artifacts` makes), so that no command written
    to bench/results/ names a directory of the machine it ran on."""
    flag, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    path = Path(value)
    if path.is_absolute():
        if path.is_relative_to(ROOT):
            value = str(path.relative_to(ROOT)) or "."
        elif "artifacts" in path.parts:
            value = str(Path(*path.parts[path.parts.index("artifacts"):]))
    return f"{flag}{eq}{value}"


def machine() -> str:
    """Cores, processor and Python; torch's thread count where torch is loaded."""
    out = (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
           f"Python {platform.python_version()}")
    torch = sys.modules.get("torch")
    return out + (f", {torch.get_num_threads()} torch thread(s)" if torch else "")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the machine was around a run."""
    return [round(value, 2) for value in os.getloadavg()]


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """The seconds `fn(*args, **kwargs)` took, and what it returned."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def arguments(doc: str, *artifacts: str) -> argparse.ArgumentParser:
    """A benchmark's parser: its docstring as help, --out (default bench/results/) and, for each
    name in `artifacts` (checkpoint, data, cache, index), that path of the demo artifacts."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in artifacts:
        parser.add_argument(f"--{name}", type=Path, default=ROOT / "artifacts" / DEMO[name],
                            help=f"default: artifacts/{DEMO[name]}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    return parser


# -- writing results ----------------------------------------------------------------------------
def pyplot() -> Any:
    """matplotlib.pyplot on the file-only backend (benchmarks run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_results(out: Path, name: str, result: dict, markdown: str,
                  figure: Figure | None = None) -> None:
    """OUT/NAME.json, OUT/NAME.md and, given a figure, OUT/NAME.png."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown)
    if figure is not None:
        figure.tight_layout()
        figure.savefig(out / f"{name}.png", dpi=110)
        pyplot().close(figure)


# -- a served index -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A server in its own process group on loopback, logging to `log`: `argv` with "{port}"
    standing for a free port, run in `cwd`, ready once GET `ready` answers 200."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, ready: str,
                 cwd: Path = ROOT) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        self.process = subprocess.Popen([arg.replace("{port}", str(self.port)) for arg in argv],
                                        cwd=cwd, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
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


class Server(Process):
    """`xmr serve` on `index` and `checkpoint`, read-only; `settings`: XMR_* variables on top
    of this process's environment."""

    def __init__(self, index: Path, checkpoint: Path, log: Path,
                 settings: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XMR_READ_ONLY": "true",
               "XMR_LOG_LEVEL": "warning", **(settings or {})}
        env.pop("XMR_API_KEY", None)
        super().__init__([sys.executable, "-m", "xmr", "serve", "--index", str(index),
                          "--checkpoint", str(checkpoint), "--port", "{port}"], env, log,
                         "/readyz")


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the whole answer: plain
    HTTP over asyncio streams, because the load generator shares the server's cores and an
    httpx AsyncClient spends several ms of CPU per request. It reads the status line, headers
    and exactly Content-Length bytes and parses the JSON, so every counted answer is a complete
    200 with a result list. Nothing is cached."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, payload: dict) -> tuple[int, dict | None]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        body = json.dumps(payload).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {name.strip().lower(): value.strip()
                  for name, _, value in (line.partition(":") for line in lines[1:])}
        data = await self.reader.readexactly(int(fields["content-length"]))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, (json.loads(data) if status == 200 else None)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


async def closed_loop(url: str, queries: list[str], clients: int, seconds: float,
                      warmup: float, k: int = 10) -> dict[str, float]:
    """Text-to-image searches in a closed loop: each of `clients` connections sends its next
    query when the last one is answered. Latency is from sending to having the whole parsed
    answer; only requests sent after `warmup` and answered within `seconds` count."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop = start + warmup, start + warmup + seconds

    async def client(n: int) -> None:
        nonlocal errors
        connection = Connection(host, int(port))
        i = n * 7919
        try:
            while (now := time.perf_counter()) < stop:
                status, answer = await connection.post_json(
                    "/v1/search/text-to-image", {"text": queries[i % len(queries)], "k": k})
                done = time.perf_counter()
                i += 1
                if status != 200 or answer is None or len(answer["results"]) != k:
                    errors += 1
                elif now >= measure_from and done <= stop:
                    latencies.append(done - now)
        finally:
            await connection.close()

    await asyncio.gather(*(client(n) for n in range(clients)))
    latencies.sort()
    return {"qps": len(latencies) / seconds, "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "requests": len(latencies), "errors": errors}
