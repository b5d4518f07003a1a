"""The memory-mapped store answers as the in-memory store does, never writes its file, and
holds no private copy of the vectors it maps."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index.mapped import MappedStore
from index.store import FaissStore, VectorStore
from tests.index.helpers import clustered

ROOT = Path(__file__).resolve().parents[2]

DIM = 32
SPECS = ["Flat", "IVF16,Flat", "HNSW16"]


def _saved(spec: str, data: np.ndarray, ids: np.ndarray, directory: Path) -> FaissStore:
    store = FaissStore.create(DIM, spec, gpu=False)
    store.nprobe = store.ef_search = 16 if spec.startswith("IVF") else 2048  # as good as
    # exact, so that the mapped and the in-memory answers can be compared
    store.train(data)
    store.add(ids, data)
    store.save(directory)
    return store


def _digest(directory: Path) -> str:
    return hashlib.sha256((directory / "index.faiss").read_bytes()).hexdigest()


@pytest.mark.parametrize("spec", SPECS)
def test_mapped_writes_answer_as_in_memory_writes(spec: str, tmp_path: Path) -> None:
    data = clustered(1500, DIM, seed=1)
    ids = np.arange(len(data), dtype=np.int64) * 31 + 7
    memory = _saved(spec, data, ids, tmp_path / "snap")
    before = _digest(tmp_path / "snap")
    mapped = MappedStore.load(tmp_path / "snap")
    assert isinstance(mapped, VectorStore) and mapped.knob() == memory.knob()
    fresh = clustered(40, DIM, seed=2)
    for store in (memory, mapped):  # remove 20, replace 20 in place, add 20 new
        assert store.remove(ids[:20]) == 20 and store.remove(ids[:20]) == 0
        store.add(np.concatenate([ids[20:40], ids[-1:] + np.arange(1, 21)]), fresh)
    assert mapped.count() == memory.count() == len(data) - 20 + 20
    queries = np.concatenate([clustered(30, DIM, seed=3), fresh[:10], data[:10]])
    allow = ids[1::3]
    for kwargs in ({}, {"allow": allow}):
        got_scores, got = mapped.search(queries, 10, **kwargs)
        want_scores, want = memory.search(queries, 10, **kwargs)
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)
        assert (got == want).mean() > 0.99  # ties may order differently
    assert not np.isin(mapped.search(data[:20], 10)[1], ids[:20]).any()
    assert _digest(tmp_path / "snap") == before, "a write reached the mapped file"

    mapped.save(tmp_path / "next")
    again = FaissStore.load(tmp_path / "next")
    assert again.count() == memory.count() and again.spec == spec
    np.testing.assert_allclose(again.search(queries, 10)[0], memory.search(queries, 10)[0],
                               rtol=1e-5, atol=1e-6)
    assert mapped.rebase(tmp_path / "next") and not mapped.delta.count()
    np.testing.assert_allclose(mapped.search(queries, 10)[0], memory.search(queries, 10)[0],
                               rtol=1e-5, atol=1e-6)


def test_a_pruned_snapshot_keeps_serving_and_saving(tmp_path: Path) -> None:
    """Another process may delete the snapshot a store maps (it wrote a newer one)."""
    data = clustered(500, DIM, seed=4)
    ids = np.arange(len(data), dtype=np.int64)
    _saved("Flat", data, ids, tmp_path / "snap")
    mapped = MappedStore.load(tmp_path / "snap")
    for path in (tmp_path / "snap").iterdir():
        path.unlink()
    assert (mapped.search(data[:5], 1)[1][:, 0] == ids[:5]).all()
    assert not mapped.rebase(tmp_path / "snap")  # gone: keeps what it has
    mapped.add(np.array([10_000]), data[:1])
    mapped.save(tmp_path / "next")
    assert FaissStore.load(tmp_path / "next").count() == len(data) + 1


def test_reset_keeps_what_the_base_learnt(tmp_path: Path) -> None:
    data = clustered(800, DIM, seed=5)
    ids = np.arange(len(data), dtype=np.int64)
    _saved("IVF16,Flat", data, ids, tmp_path / "snap")
    mapped = MappedStore.load(tmp_path / "snap")
    mapped.reset()
    assert mapped.count() == 0 and mapped.base.is_trained
    mapped.add(ids[:100], data[:100])
    assert mapped.count() == 100 and (mapped.ids() == ids[:100]).all()


GROWTH = """
import sys
from pathlib import Path
import numpy as np
from index.mapped import MappedStore
from index.store import FaissStore

def anonymous():
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) * 1024

load = {"mapped": MappedStore.load, "copied": FaissStore.load}[sys.argv[2]]
start = anonymous()
loaded = load(Path(sys.argv[1]))
loaded.search(np.eye(256, dtype=np.float32)[:4], 5)  # a scan touches every page
print(anonymous() - start)
"""


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux only")
def test_mapped_vectors_are_the_file_s_pages_not_a_copy(tmp_path: Path) -> None:
    """Measured in a fresh process each: a long-lived one may hand a load memory it freed
    before, which its own memory figures do not see."""
    data = np.random.default_rng(0).standard_normal((60_000, 256)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    store = FaissStore.create(256, "Flat")
    store.add(np.arange(len(data)), data)
    store.save(tmp_path / "snap")
    grown = {}
    for name in ("mapped", "copied"):
        done = subprocess.run([sys.executable, "-c", GROWTH, str(tmp_path / "snap"), name],
                              cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr[-2000:]
        grown[name] = int(done.stdout.split()[-1])
    assert grown["copied"] > 0.9 * data.nbytes, grown  # the measure sees a copy where there is one
    assert grown["mapped"] < 0.1 * data.nbytes, grown
