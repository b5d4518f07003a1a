"""A real service for the tests: a tiny corpus, a linear checkpoint trained on it for 2 epochs,
`python -m xmr serve` started as a child process on a free loopback port over a fresh index,
and the corpus ingested through the API itself (real SQLite, real FAISS, real uvicorn)."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    index: Path
    corpus: Path
    checkpoint: Path
    api_key: str = API_KEY
    items: dict[str, dict[str, int]] = field(default_factory=dict)  # corpus id -> {modality: id}

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_server(index: Path, checkpoint: Path, log: Path, corpus: Path | None = None,
                 env: dict[str, str] | None = None, timeout: float = 180) -> Server:
    port = free_port()
    environment = {**os.environ, "XMR_API_KEY": API_KEY, "XMR_MAX_BODY_BYTES": str(2 << 20),
                   "PYTHONPATH": str(ROOT), **(env or {})}
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "xmr", "serve", "--index", str(index), "--checkpoint",
         str(checkpoint), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=environment, stdout=handle, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log, index, corpus or Path(),
                    checkpoint)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"xmr serve exited with {process.returncode}:\n"
                               f"{server.log_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"xmr serve not ready in {timeout} s:\n{server.log_text()[-3000:]}")


def corpus_rows(corpus: Path) -> list[dict[str, object]]:
    lines = (corpus / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def ingest_corpus(server: Server) -> None:
    rows = corpus_rows(server.corpus)
    items = [{"image_base64": base64.b64encode((server.corpus / str(row["image"])).read_bytes())
              .decode(), "text": row["text"], "labels": row["labels"]} for row in rows]
    with server.client() as client:
        answer = client.post("/v1/items/batch", json={"items": items}, headers=server.auth)
    assert answer.status_code == 201, answer.text
    made = answer.json()["items"]
    assert len(made) == 2 * len(rows)
    for row, (image, text) in zip(rows, zip(made[::2], made[1::2], strict=True), strict=True):
        server.items[str(row["id"])] = {"image": image["id"], "text": text["id"]}


@contextmanager
def serving(corpus: Path, checkpoint: Path, root: Path, env: dict[str, str] | None = None
            ) -> Iterator[Server]:
    """A server over a fresh index in `root`, the corpus ingested through the API; stopped
    after."""
    running = start_server(root / "index", checkpoint, root / "server.log", corpus, env)
    try:
        ingest_corpus(running)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def server(tiny_exported: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """The server most tests share; a test that changes what the others see undoes it."""
    with serving(*tiny_exported, tmp_path_factory.mktemp("service")) as running:
        yield running


def png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()
