"""Re-index jobs: `python -m xmr index build` in a child process, watched from the event loop.

The job reads backbone features through the index's feature cache (the one its live generation
was built with, recorded in its manifest, else FEATURE_CACHE inside the index directory), so
only content the cache lacks runs through the backbones. The child reports progress as JSON
lines (`--progress-json`), which the job keeps as numbers: done, total, rate.

The child is started with fork+exec in C (`asyncio.create_subprocess_exec`): a fresh
interpreter, so no torch or FAISS thread state is inherited (forking a warmed-up process and
running Python in the child hangs). On success the service adopts the new generation through
the retriever (catalog.reload(), plus the new encoder when the checkpoint changed) without
dropping a request; the service's other worker processes follow the new generation on their
next search or write (index.catalog). One job runs at a time across the processes, and every
process answers for every job (service.job_board).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from index import layout
from index.manifest import Manifest
from service.job_board import JobBoard
from service.problems import Problem
from service.settings import Settings

if TYPE_CHECKING:
    from service.retriever import Retriever

log = logging.getLogger("service.jobs")
ROOT = Path(__file__).resolve().parents[1]  # so the child imports this very checkout
FEATURE_CACHE = "feature-cache"  # in the index directory, when its manifest names none
SAVE_EVERY_S = 0.25  # how often a running job's progress is written for the other processes


@dataclass
class ReindexJob:
    id: str
    data: str
    checkpoint: str
    cache: str
    state: str = "queued"
    done: int | None = None  # items embedded (or found unreadable) so far
    total: int | None = None  # items to embed
    rate: float | None = None  # items per second since the build started
    message: str = ""
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    exit_code: int | None = None
    lines: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=20))

    @property
    def progress(self) -> float | None:
        if self.state == "succeeded":
            return 1.0
        return self.done / self.total if self.done is not None and self.total else None

    def public(self) -> dict[str, object]:
        return {
            "id": self.id, "state": self.state, "progress": self.progress, "done": self.done,
            "total": self.total, "rate": self.rate, "message": self.message, "data": self.data,
            "checkpoint": self.checkpoint, "cache": self.cache,
            "created_at": self.created_at, "finished_at": self.finished_at,
            "exit_code": self.exit_code, "log_tail": list(self.lines),
        }


class JobManager:
    def __init__(self, settings: Settings, retriever: Callable[[], Retriever | None]) -> None:
        self.settings = settings
        self._retriever = retriever
        self.board = JobBoard(Path(settings.index))
        self._tasks: set[asyncio.Task[None]] = set()
        self._process: asyncio.subprocess.Process | None = None

    def start(self, data: str, checkpoint: str | None) -> ReindexJob:
        corpus = Path(data)
        if not (corpus / "manifest.jsonl").is_file():
            raise Problem(422, f"data {data!r} is not a corpus directory (no manifest.jsonl)")
        retriever = self._retriever()
        served = (retriever.checkpoint_path if retriever is not None
                  else str(self.settings.checkpoint))
        ckpt = checkpoint or served
        if not Path(ckpt).is_file():
            raise Problem(422, f"checkpoint {ckpt!r} does not exist")
        if not self.board.claim():
            raise Problem(409, "a re-index job is already running; watch it under /v1/jobs")
        try:
            cache = feature_cache(Path(self.settings.index))
            job = ReindexJob(uuid.uuid4().hex[:12], str(corpus.resolve()),
                             str(Path(ckpt).resolve()), str(cache))
            self._save(job)
        except BaseException:  # no job started: the slot must not stay taken
            self.board.release()
            raise
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def get(self, job_id: str) -> dict[str, object] | None:
        """The job as /v1/jobs shows it, whichever process runs or ran it."""
        return self.board.get(job_id)

    def all(self) -> list[dict[str, object]]:
        return self.board.all()

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.board.release()

    def _save(self, job: ReindexJob) -> None:
        self.board.save(job.public())

    # -- the job -------------------------------------------------------------------------------
    async def _run(self, job: ReindexJob) -> None:
        job.state = "running"
        job.message = "building the new generation"
        self._save(job)
        command = [sys.executable, "-m", "xmr", "index", "build", "--checkpoint", job.checkpoint,
                   "--data", job.data, "--out", str(Path(self.settings.index).resolve()),
                   "--cache", job.cache, "--progress-json"]
        # The child's own environment: this checkout first on its path, and no terminal bars
        # (tqdm reads TQDM_DISABLE; its progress comes as JSON lines instead).
        env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        log.info("job %s: %s", job.id, " ".join(command))
        preload: asyncio.Future[str | None] | None = None
        try:
            # A new checkpoint's encoder loads while the build runs, so the swap is immediate.
            preload = asyncio.ensure_future(self._preload(job))
            self._process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, env=env, cwd=os.getcwd())
            await self._follow(job, self._process)
            job.exit_code = await self._process.wait()
            if job.exit_code != 0:
                self._fail(job, f"xmr index build exited with {job.exit_code}")
                return
            job.message = "adopting the new generation"
            self._save(job)
            await self._adopt(job, await preload)
            job.state, job.finished_at = "succeeded", time.time()
            log.info("job %s succeeded: %s", job.id, job.message)
        except asyncio.CancelledError:
            self._fail(job, "cancelled (service shutting down)")
            raise
        except Exception as err:  # reported on the job, the service keeps serving
            log.exception("job %s failed", job.id)
            self._fail(job, f"{type(err).__name__}: {err}")
        finally:
            self._process = None
            if preload is not None and not preload.done():
                preload.cancel()
            self._save(job)
            self.board.release()

    async def _follow(self, job: ReindexJob, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        buffer, saved = b"", time.monotonic()
        while chunk := await process.stdout.read(4096):
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for raw in lines:
                self._note(job, raw.decode("utf-8", "replace").strip())
            if time.monotonic() - saved >= SAVE_EVERY_S:
                self._save(job)
                saved = time.monotonic()
        self._note(job, buffer.decode("utf-8", "replace").strip())

    def _note(self, job: ReindexJob, line: str) -> None:
        """A progress line (index.cli's --progress-json) updates the numbers; any other line
        (a log line, the build's summary) goes to the tail."""
        if not line:
            return
        if line.startswith("{"):
            try:
                doc = json.loads(line)
                job.done, job.total, job.rate = int(doc["done"]), int(doc["total"]), doc["rate"]
                return
            except (ValueError, KeyError, TypeError):
                pass
        job.lines.append(line[:500])

    async def _preload(self, job: ReindexJob) -> str | None:
        """The checkpoint id of the job's encoder, loaded by the retriever while the build
        runs, when it is not the one being served."""
        retriever = self._retriever()
        return None if retriever is None else await retriever.preload(job.checkpoint)

    async def _adopt(self, job: ReindexJob, preloaded: str | None) -> None:
        retriever = self._retriever()
        if retriever is not None:
            job.message = await retriever.adopt(job.checkpoint, preloaded)

    def _fail(self, job: ReindexJob, message: str) -> None:
        job.state, job.finished_at = "failed", time.time()
        job.message = message
        log.warning("job %s failed: %s", job.id, message)


def feature_cache(index: Path) -> Path:
    """The feature cache the live generation of `index` was built with, where it still
    exists; else FEATURE_CACHE in the index directory (filled by the first job)."""
    live = layout.current(index) if index.is_dir() else None
    recorded = Manifest.read(live).extra.get("feature_cache") if live is not None else None
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    return index.resolve() / FEATURE_CACHE
