"""Dynamic batching: concurrent queries become one encoder call, on a pool of worker threads.

Torch never runs on the event loop. Each of `workers` threads takes a batch from one shared
queue and runs it to the end, so that many batches run at once: on a CPU, several one-thread
workers serve more per second than one worker whose OpenMP team spans the cores, since nothing
waits at a barrier for a core the event loop holds (bench/results/service_ab.md). A batch is
every query that queued while the worker's previous batch ran, topped up for at most
`max_wait_s` only when that batch held more than one query (a sign of concurrent load), so a
lone client never waits for company and a busy service groups up to `max_size`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger("service.batching")
T = TypeVar("T")


def name_os_thread(name: str) -> None:
    """Give the calling thread `name` in the OS as well (Linux; 15 bytes at most), so that
    `top -H`, py-spy and /proc/PID/task/*/comm tell the encoder workers and the search thread
    from the event loop (bench/results/cpu_split.md splits the server's CPU this way); OpenMP
    threads a worker starts take its name. Python before 3.14 names threads for itself only."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux: only ever read, not needed
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME


class Overloaded(Exception):
    """The queue is full: answer 503 rather than queue without bound."""


@dataclass
class _Queued:
    kind: Hashable  # a batch key ("text", "image") or "call" for an exclusive function
    payload: Any
    future: Future[Any] = field(default_factory=Future)


class DynamicBatcher(Generic[T]):
    """`run(kind, payloads) -> results` is called on a worker thread with 1..max_size payloads
    of one kind, by up to `workers` threads at once; `on_batch(kind, size, seconds)` observes
    each call (metrics), its size counted in query rows: `rows(payload)` of each payload (1
    each unless given). `init` runs first on each worker thread."""

    def __init__(self, run: Callable[[Any, list[Any]], Sequence[T]], *, max_size: int,
                 max_wait_s: float, queue_max: int,
                 on_batch: Callable[[Any, int, float], None] | None = None,
                 name: str = "batcher", init: Callable[[], None] | None = None,
                 rows: Callable[[Any], int] | None = None, workers: int = 1) -> None:
        self._run = run
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[_Queued] = queue.Queue(maxsize=queue_max)
        self._on_batch = on_batch
        self._init = init
        self._rows = rows
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}" if workers > 1 else name,
                             daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- event-loop side ------------------------------------------------------------------------
    async def submit(self, kind: Hashable, payload: Any) -> T:
        return await self._enqueue(_Queued(kind, payload))

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on a worker thread, outside any batch (re-ranking, swapping the encoder)."""
        return await self._enqueue(_Queued("call", fn))

    def call_sync(self, fn: Callable[[], Any]) -> Any:
        job = _Queued("call", fn)
        self._queue.put(job)
        return job.future.result()

    def submit_nowait(self, kind: Hashable, payload: Any) -> Future[T]:
        """From any thread (the encoder hands its batch to the search stage this way)."""
        job = _Queued(kind, payload)
        try:
            self._queue.put_nowait(job)
        except queue.Full as err:
            raise Overloaded(f"{self._queue.maxsize} queries already queued") from err
        return job.future

    async def _enqueue(self, job: _Queued) -> Any:
        try:
            self._queue.put_nowait(job)
        except queue.Full as err:
            raise Overloaded(f"{self._queue.maxsize} queries already queued") from err
        return await asyncio.wrap_future(job.future)

    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def depth(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        for _ in self._threads:  # each worker takes one stop and ends
            self._queue.put(_Queued("stop", None))
        for thread in self._threads:
            thread.join(timeout=30)

    # -- worker side ----------------------------------------------------------------------------
    def _loop(self) -> None:
        name_os_thread(threading.current_thread().name)
        if self._init is not None:
            self._init()  # per-thread settings (OpenMP thread counts are per calling thread)
        pending: _Queued | None = None
        last_size = 1
        while True:
            first = pending if pending is not None else self._queue.get()
            pending = None
            if first.kind == "stop":
                return
            if first.kind == "call":
                self._call(first)
                continue
            batch, pending = self._gather(first, wait=last_size > 1)
            last_size = len(batch)
            self._run_batch(first.kind, batch)

    def _gather(self, first: _Queued, wait: bool) -> tuple[list[_Queued], _Queued | None]:
        """Same-kind jobs after `first`; the first job of another kind (or the stop sentinel)
        ends the batch and is handed back to start this worker's next one."""
        batch = [first]
        deadline = time.monotonic() + (self.max_wait_s if wait else 0.0)
        while len(batch) < self.max_size:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else \
                    self._queue.get_nowait()
            except queue.Empty:
                break
            if job.kind != first.kind:
                return batch, job
            batch.append(job)
        return batch, None

    def _run_batch(self, kind: Hashable, jobs: list[_Queued]) -> None:
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        started = time.perf_counter()
        try:
            results = self._run(kind, [job.payload for job in live])
        except BaseException as err:  # delivered to every waiting request
            log.exception("%s: batch of %d %s jobs failed", threading.current_thread().name,
                          len(live), kind)
            for job in live:
                job.future.set_exception(err)
            return
        if self._on_batch is not None:
            size = len(live) if self._rows is None else sum(self._rows(j.payload) for j in live)
            self._on_batch(kind, size, time.perf_counter() - started)
        for job, result in zip(live, results, strict=True):
            job.future.set_result(result)

    def _call(self, job: _Queued) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.payload())
        except BaseException as err:
            job.future.set_exception(err)
