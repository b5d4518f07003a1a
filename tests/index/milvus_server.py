"""A Milvus server for tests: milvus-lite's gRPC server (`milvus-lite server`) run as its own
process on a free loopback port, reached as `http://127.0.0.1:PORT` exactly like a Milvus
standalone server (pymilvus speaks the Milvus gRPC protocol to it over TCP).

Why this and not the `.db` path: with a local `.db` URI pymilvus starts milvus-lite inside the
calling process, and our store takes the "local file" branches (relative path in store.json,
one file per generation, nothing to drop when a generation is pruned). An `http://` URI takes
the production branches: one shared server holding every generation's collections, the URI
kept verbatim, collections dropped on the server when a generation goes. No Milvus server
image can be pulled here, so this is the closest real server we can run; it is milvus-lite's
Python implementation of the protocol, not Milvus standalone (see docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1


def available() -> bool:
    """milvus-lite >= 3 ships the TCP server (`milvus-lite server`); 2.x does not."""
    try:
        return importlib.util.find_spec("milvus_lite.adapter.grpc.server") is not None
    except ModuleNotFoundError:
        return False


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when pytest dies, even by SIGKILL (no orphan servers on a
    shared CI box)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_listening(proc: subprocess.Popen[bytes], port: int) -> bool:
    """True once the port accepts connections; False if the process died first (a lost race
    for the port)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.1)
    raise TimeoutError(f"milvus-lite server did not listen on port {port} in "
                       f"{START_TIMEOUT_S:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # run_server stops gracefully and releases its lock
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@contextlib.contextmanager
def serve(data_dir: Path, attempts: int = 3) -> Iterator[str]:
    """Run a server over `data_dir` until the block ends; yields its `http://` URI."""
    log = data_dir.parent / f"{data_dir.name}.log"
    for _ in range(attempts):
        port = _free_port()
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir),
                 "--host", "127.0.0.1", "--port", str(port), "--max-workers", "4"],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        try:
            if _wait_until_listening(proc, port):
                yield f"http://127.0.0.1:{port}"
                return
        finally:
            _stop(proc)
    raise RuntimeError(f"milvus-lite server did not start; see {log}:\n{log.read_text()[-2000:]}")
