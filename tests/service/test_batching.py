"""The encode-then-search pipeline in process, with the real encoder, real FAISS and SQLite:
concurrent searches queued behind a busy encoder become one encoder batch and one catalog
search per (modality, k, labels), and each caller gets exactly its own row of it; several
encoder workers run batches at the same time and still answer each caller its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from index.catalog import Catalog
from index.records import NewItem, text_hash
from service.batching import DynamicBatcher
from service.lifecycle import load_encoder
from service.retriever import Retriever
from service.settings import Settings
from service.vectors import SearchParams
from tests.service.conftest import corpus_rows

if TYPE_CHECKING:
    from models.inference import Encoder

QUERIES = ["a red car on a road", "mountains under snow", "a small dog", "city at night",
           "a bowl of fruit", "waves on a beach", "an old church", "a football match"]


class CountingCatalog:
    """The real catalog; records the number of query rows of every search call."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._catalog, name)

    def search(self, queries: np.ndarray, *args: object, **kwargs: object) -> object:
        self.calls.append(len(queries))
        return self._catalog.search(queries, *args, **kwargs)  # type: ignore[arg-type]


@dataclass
class Engine:
    """A retriever over the real encoder and catalog it was made with, and the batches its
    metrics hook observed."""
    retriever: Retriever
    encoder: Encoder
    catalog: CountingCatalog
    observed: list[tuple[str, int]]


@pytest.fixture(params=[1])
def engine(request: pytest.FixtureRequest, tiny_run: tuple[Path, Path], tmp_path: Path
           ) -> Iterator[Engine]:
    """One encoder worker unless a test asks for more (indirect parametrisation): the batching
    tests hold that one worker to make a batch."""
    corpus, checkpoint = tiny_run
    settings = Settings(index=tmp_path / "index", checkpoint=checkpoint, batch_wait_ms=0,
                        encoder_workers=request.param)
    observed: list[tuple[str, int]] = []
    encoder = load_encoder(checkpoint, settings)
    catalog = CountingCatalog(Catalog.open(settings.index, checkpoint_id=encoder.checkpoint_id,
                                           dim=encoder.dim, levels=encoder.levels))
    retriever = Retriever(encoder, catalog, settings,  # type: ignore[arg-type]
                          lambda kind, size, _s: observed.append((kind, size)))
    texts = sorted({str(row["text"]) for row in corpus_rows(corpus)})
    items = [NewItem("text", text_hash(text), text=text) for text in texts]
    asyncio.run(retriever.ingest(items, texts, timeout_s=60))
    catalog.calls.clear()
    try:
        yield Engine(retriever, encoder, catalog, observed)
    finally:
        retriever.close()


async def searches_behind_a_busy_encoder(engine: Engine, jobs: list[tuple[str, int]]
                                         ) -> list[list[tuple[int, float]]]:
    """Hold the encoder thread, queue every search, then let it go: one encoder batch."""
    retriever = engine.retriever
    release = threading.Event()
    held = asyncio.ensure_future(retriever.on_encoder_thread(release.wait))
    await asyncio.sleep(0.05)  # the worker thread is now inside release.wait()
    tasks = [asyncio.ensure_future(retriever.search(text, SearchParams("text", k, ())))
             for text, k in jobs]
    while retriever.queued() < len(jobs):
        await asyncio.sleep(0.01)
    release.set()
    await held
    return [[(hit.id, hit.score) for hit in hits] for hits in await asyncio.gather(*tasks)]


def test_one_encoder_batch_is_one_search_per_key(engine: Engine) -> None:
    counting = engine.catalog
    jobs = [(text, 3 if i % 3 else 5) for i, text in enumerate(QUERIES)]  # two keys: k=3, k=5
    got = asyncio.run(searches_behind_a_busy_encoder(engine, jobs))

    assert sorted(counting.calls) == [3, 5], counting.calls  # 8 searches, 2 FAISS calls
    observed = engine.observed
    assert ("text", 8) in observed, observed  # one encoder batch
    assert sorted(size for kind, size in observed[-2:] if kind == "search") == [3, 5], observed
    # Each caller got its own rows: the same as searching its vector alone.
    for (text, k), hits in zip(jobs, got, strict=True):
        alone = counting._catalog.search(engine.encoder.encode_texts([text]), k, "text")[0]
        assert [h.id for h in alone] == [i for i, _ in hits], text
        assert np.allclose([h.score for h in alone], [s for _, s in hits], atol=1e-5), text


def test_a_cancelled_caller_leaves_its_batch_mates_their_answers(engine: Engine) -> None:
    retriever = engine.retriever

    async def run() -> tuple[list[list[tuple[int, float]]], bool]:
        release = threading.Event()
        held = asyncio.ensure_future(retriever.on_encoder_thread(release.wait))
        await asyncio.sleep(0.05)
        tasks = [asyncio.ensure_future(retriever.search(text, SearchParams("text", 3, ())))
                 for text in QUERIES[:4]]
        while retriever.queued() < 4:
            await asyncio.sleep(0.01)
        tasks[0].cancel()  # a request timing out while its batch is queued
        release.set()
        await held
        answers = await asyncio.gather(*tasks[1:])
        return [[(h.id, h.score) for h in hits] for hits in answers], tasks[0].cancelled()

    answers, cancelled = asyncio.run(run())
    assert cancelled
    assert all(len(hits) == 3 for hits in answers), answers


def test_workers_run_batches_at_the_same_time() -> None:
    # Each batch waits for another to be running: only passes if two run at once.
    both_running = threading.Barrier(2, timeout=10)

    def run(kind: str, payloads: list[int]) -> list[int]:
        both_running.wait()
        return [p * 2 for p in payloads]

    batcher: DynamicBatcher[int] = DynamicBatcher(run, max_size=1, max_wait_s=0, queue_max=8,
                                                  workers=2)

    async def two() -> list[int]:
        return list(await asyncio.gather(batcher.submit("x", 1), batcher.submit("x", 2)))

    try:
        assert asyncio.run(two()) == [2, 4]
    finally:
        batcher.close()
    assert not batcher.alive()  # close() stops every worker


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="OS thread names: Linux")
def test_workers_carry_their_names_in_the_os() -> None:
    # what top -H and py-spy read to tell the threads apart
    def run(kind: str, payloads: list[int]) -> list[str]:
        comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()
        return [comm for _ in payloads]

    batcher: DynamicBatcher[str] = DynamicBatcher(run, max_size=1, max_wait_s=0, queue_max=8,
                                                  name="encoder", workers=2)
    try:
        names = batcher.call_sync(lambda: Path(
            f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())
        answers = asyncio.run(batcher.submit("x", 1))
    finally:
        batcher.close()
    assert names in {"encoder-0", "encoder-1"}
    assert answers in {"encoder-0", "encoder-1"}


@pytest.mark.parametrize("engine", [2], indirect=True)
def test_concurrent_searches_on_two_workers_get_their_own_answers(engine: Engine) -> None:
    async def run() -> list[list[tuple[int, float]]]:
        queries = QUERIES * 4  # 32 searches from concurrent callers, over both workers
        found = await asyncio.gather(*(engine.retriever.search(q, SearchParams("text", 3, ()))
                                       for q in queries))
        return [[(h.id, h.score) for h in hits] for hits in found]

    got = asyncio.run(run())
    for text, hits in zip(QUERIES * 4, got, strict=True):
        alone = engine.catalog.search(engine.encoder.encode_texts([text]), 3, "text")[0]
        assert [h.id for h in alone] == [i for i, _ in hits], text
        assert np.allclose([h.score for h in alone], [s for _, s in hits], atol=1e-5), text
    observed = engine.observed
    assert sum(size for kind, size in observed if kind == "text") >= 32, observed
