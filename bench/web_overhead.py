"""CPU the web layer spends on one search request, without the encoder or the index.

    flock /work/heavy.lock nice -n 10 .venv/bin/python bench/web_overhead.py \\
        [--requests 5000] [--clients 8] [--repeats 3] [--profile out.prof]

The real app (`service.app.create_app`: middleware, routing, validation, problem handlers,
metrics) with a stub engine that answers every search at once with 10 canned hits, measured
twice: in-process through its ASGI interface (the app, and the app without the middleware it
adds), and served by uvicorn in a child process as `xmr serve` serves it, loaded over loopback
by the service benchmark's lean client (the server's CPU read from /proc, so the client's is
not in it). That is what the event loop pays per search on top of encoding and searching: the
figure the service benchmark's 0.8x-of-raw goal is most sensitive to on 2 shared cores.
Figures are microseconds of CPU time per request, not wall time, so a busy neighbour inflates
them less (it still slows caches and frequency: note the load average with them).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.service_bench import Connection, cpu_seconds, free_port, wait_ready  # noqa: E402
from index.records import Hit, Record  # noqa: E402
from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402

PATH = "/v1/search/text-to-image"
QUERY = {"text": "cat face", "k": 10}


class StubEngine:
    """What the search and health routes read from an Retriever, answering at once."""

    def __init__(self, k: int = 10) -> None:
        self.catalog = SimpleNamespace(levels=("group", "subgroup"), count=lambda m=None: 1000)
        self.encoder = SimpleNamespace(checkpoint_id="0123456789abcdef", method_name="stub")
        self.batcher = SimpleNamespace(depth=lambda: 0, alive=lambda: True)
        self.searcher = self.batcher
        self.swaps = 0
        self.can_rerank = False
        self.hits = [Hit(i, 0.5, Record(i, "image", ("Animals & Nature", "animal-mammal"),
                                        None, f"/x/{i}.png", f"b:{i}", "0123456789abcdef"))
                     for i in range(k)]

    async def search(self, query: Any, k: int, modality: str, labels: Any = None) -> list[Hit]:
        return self.hits[:k]


@asynccontextmanager
async def _no_lifespan(app: Any) -> AsyncIterator[None]:
    yield  # the engine is the stub, set before serving: nothing to load


def stub_app(middleware: bool = True) -> Any:
    app = create_app(Settings(read_only=True, log_level="warning"))
    app.state.retriever = StubEngine()
    app.router.lifespan_context = _no_lifespan
    if not middleware:
        app.user_middleware = []  # read when the first request builds the stack
    return app


# -- in-process ---------------------------------------------------------------------------------
async def drive_asgi(app: Any, n: int) -> int:
    """n POSTs of a JSON text query straight into `app`; returns how many answered 200."""
    body = json.dumps(QUERY).encode()
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": PATH, "raw_path": PATH.encode(),
             "root_path": "", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    statuses = [await one_request(app, {**scope, "state": {}}, body) for _ in range(n)]
    return statuses.count(200)


async def one_request(app: Any, scope: dict[str, Any], body: bytes) -> int:
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # a client that stays connected
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def asgi_cpu_us(app: Any, n: int) -> float:
    asyncio.run(drive_asgi(app, 200))  # warm-up: route caches, validators
    started = time.process_time()
    ok = asyncio.run(drive_asgi(app, n))
    spent = time.process_time() - started
    if ok != n:
        raise RuntimeError(f"only {ok} of {n} requests answered 200")
    return 1e6 * spent / n


# -- over HTTP ----------------------------------------------------------------------------------
def serve(port: int) -> None:
    """The stub app under uvicorn, configured as `xmr serve` configures it."""
    from service.cli import serve as run_uvicorn

    run_uvicorn(stub_app(), Settings(read_only=True, port=port, log_level="warning"))


async def drive_http(port: int, n: int, clients: int) -> int:
    """n POSTs over `clients` keep-alive connections (closed loop); how many answered 200."""
    left, ok = n, 0

    async def client() -> None:
        nonlocal left, ok
        connection = Connection("127.0.0.1", port)
        try:
            while left > 0:
                left -= 1
                status, answer = await connection.post_json(PATH, QUERY)
                ok += status == 200 and answer is not None and len(answer["results"]) == 10
        finally:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return ok


def http_cpu_us(n: int, clients: int) -> float:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  [str(ROOT), os.environ.get("PYTHONPATH", "")])})
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        asyncio.run(drive_http(port, 300, clients))  # warm-up
        before = cpu_seconds(Path(f"/proc/{server.pid}/stat"))
        ok = asyncio.run(drive_http(port, n, clients))
        spent = cpu_seconds(Path(f"/proc/{server.pid}/stat")) - before
    finally:
        server.terminate()
        server.wait(timeout=30)
    if ok != n:
        raise RuntimeError(f"only {ok} of {n} requests answered 200")
    return 1e6 * spent / n


def http_implementation() -> str:
    """What uvicorn's "auto" picks here: httptools and uvloop when they are installed."""
    from importlib.util import find_spec

    parser = "httptools" if find_spec("httptools") else "h11"
    return f"{parser}, {'uvloop' if find_spec('uvloop') else 'asyncio'} loop"


def profile(app: Any, n: int, out: Path) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(drive_asgi(app, n))
    profiler.disable()
    profiler.dump_stats(out)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the in-process app")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0

    load_before = os.getloadavg()
    # The least of a few repeats: a neighbour can only add CPU time (cache misses, a slower
    # shared core), never take it away.
    figures = {
        "asgi_app_us": min(asgi_cpu_us(stub_app(), args.requests)
                           for _ in range(args.repeats)),
        "asgi_app_without_our_middleware_us": min(asgi_cpu_us(stub_app(False), args.requests)
                                                  for _ in range(args.repeats)),
        "uvicorn_server_us": min(http_cpu_us(args.requests, args.clients)
                                 for _ in range(args.repeats)),
    }
    print(json.dumps({**{k: round(v, 1) for k, v in figures.items()},
                      "requests": args.requests, "clients": args.clients,
                      "repeats": args.repeats, "http": http_implementation(),
                      "load_average_before": load_before, "load_average_after": os.getloadavg()}))
    if args.profile:
        profile(stub_app(), args.requests, args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
