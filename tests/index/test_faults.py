"""SIGKILL the ingesting process at random points; after each restart every acknowledged item
is searchable with its acknowledged text, key and metadata (upserts by key included), by its
vector and by its words, acknowledged deletes stay deleted, nothing half-written is visible
(the FAISS ids and the lexical table's ids equal the metadata ids exactly) and the index count
equals the metadata count."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from index import words
from index.catalog import Catalog
from tests.index.fault_worker import CHECKPOINT, DIM, vector

WORKER = Path(__file__).with_name("fault_worker.py")


def _run_and_kill(root: Path, tag: str, seed: int, rng: random.Random) -> list[str]:
    proc = subprocess.Popen([sys.executable, str(WORKER), str(root), tag, str(seed)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.strip() == "READY", ready
    time.sleep(rng.uniform(0.0, 0.4))  # a random point of the ingestion loop
    os.kill(proc.pid, signal.SIGKILL)
    out = proc.stdout.read().splitlines()
    assert proc.wait() == -signal.SIGKILL, "the worker died before the kill (see its stderr)"
    return out


def _check(root: Path, alive: dict[int, tuple[str, str | None]], deleted: set[int]) -> None:
    catalog = Catalog.open(root, checkpoint_id=CHECKPOINT, dim=DIM)
    try:
        gen = catalog._gen
        meta_ids = {int(r[0]) for r in gen.meta.db.execute("SELECT id FROM items")}
        store = gen.stores["text"]
        faiss_ids = set(store.ids().tolist())  # type: ignore[attr-defined]
        assert faiss_ids == meta_ids, "index and metadata disagree (a half-item)"
        words_ids = words.ids(gen.meta.db)
        assert words_ids == meta_ids, "lexical table and metadata disagree"
        assert catalog.count("text") == gen.meta.count("text") == len(meta_ids)
        assert set(alive) <= meta_ids, "an acknowledged item was lost"
        assert not deleted & meta_ids, "an acknowledged delete came back"
        if alive:
            ids = list(alive)
            queries = np.stack([vector(alive[i][0]) for i in ids])
            hits = catalog.search(queries, 1, "text")
            assert [h[0].id for h in hits] == ids
            by_words = catalog.search(queries, 1, "text", mode="lexical",
                                      texts=[alive[i][0] for i in ids])
            assert [h[0].id for h in by_words] == ids, "an item's words are not its own"
            for hit, item_id in zip(hits, ids, strict=True):
                text, key = alive[item_id]
                record = hit[0].record
                assert (record.text, record.key) == (text, key)
                assert record.metadata == ({} if key is None else {"text": text})
                assert key is None or catalog.get_by_key(key) == record
    finally:
        catalog.close()


def _kill_loop(tmp_path: Path, kills: int, seed: int) -> int:
    root = tmp_path / "idx"
    rng = random.Random(seed)
    alive: dict[int, tuple[str, str | None]] = {}
    deleted: set[int] = set()
    acks = 0
    for trial in range(kills):
        for line in _run_and_kill(root, f"t{trial}", seed * 1000 + trial, rng):
            kind, item_id, *added = line.split()
            acks += 1
            if kind == "ADD":
                alive[int(item_id)] = (added[0], None if added[1] == "-" else added[1])
            elif kind in ("DELETING", "UPSERTING"):  # unacknowledged: either version may be
                alive.pop(int(item_id), None)  # there (the check skips the item until acked)
            elif kind == "DEL":
                alive.pop(int(item_id), None)
                deleted.add(int(item_id))
        _check(root, alive, deleted)
    return acks


def test_sigkill_three_times(tmp_path: Path) -> None:
    assert _kill_loop(tmp_path, kills=3, seed=1) > 0


@pytest.mark.slow
def test_sigkill_at_random_points_25_times(tmp_path: Path) -> None:
    assert _kill_loop(tmp_path, kills=25, seed=2) > 25
