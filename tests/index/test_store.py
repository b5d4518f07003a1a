from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.store import FaissStore, VectorStore, auto_spec
from tests.index.helpers import clustered, exact, unit

DIM = 32


def _ids(n: int) -> np.ndarray:  # sparse, large: never row positions
    return (np.arange(n, dtype=np.int64) * 7919 + 10**12)


@pytest.fixture
def data() -> np.ndarray:
    return clustered(2000, DIM, seed=1)


def test_flat_matches_brute_force_with_explicit_ids(data: np.ndarray) -> None:
    store = FaissStore.create(DIM, "Flat", gpu=False)
    ids = _ids(len(data))
    store.add(ids, data)
    queries = clustered(20, DIM, seed=2)
    scores, found = store.search(queries, 10)
    assert (found == exact(data, ids, queries, 10)).all()
    np.testing.assert_allclose(scores[:, 0], (queries @ data.T).max(axis=1), rtol=1e-5)
    assert isinstance(store, VectorStore)


@pytest.mark.parametrize("spec", ["Flat", "IVF32,Flat", "HNSW16"])
def test_remove_and_upsert(spec: str, data: np.ndarray) -> None:
    store = FaissStore.create(DIM, spec, gpu=False)
    store.nprobe = 32  # all lists: exact, so the check below is deterministic
    ids = _ids(len(data))
    if not store.is_trained:
        store.train(data)
    store.add(ids, data)
    assert store.count() == len(data)
    assert store.remove(ids[:5]) == 5
    assert store.remove(ids[:5]) == 0  # idempotent
    assert store.count() == len(data) - 5
    _, found = store.search(data[:5], 3)
    assert not np.isin(found, ids[:5]).any()
    # upsert: id 5 now carries the vector of row 0
    store.add(ids[5:6], data[0:1])
    assert store.count() == len(data) - 5
    _, found = store.search(data[0:1], 1)
    assert found[0, 0] == ids[5]
    _, found = store.search(data[5:6], 2)
    assert ids[5] not in found[0] or np.allclose(data[5] @ data[0], 1, atol=1e-3)


def test_hnsw_uses_tombstones(data: np.ndarray, tmp_path: Path) -> None:
    store = FaissStore.create(DIM, "HNSW16", gpu=False)
    ids = _ids(len(data))
    store.add(ids, data)
    store.remove(ids[:10])
    assert len(store.tombstones) == 10 and store.index.ntotal == len(data)
    store.save(tmp_path / "s")
    again = FaissStore.load(tmp_path / "s", gpu=False)
    assert again.count() == len(data) - 10
    _, found = again.search(data[:10], 5)
    assert not np.isin(found, ids[:10]).any()


def test_allow_list_filters(data: np.ndarray) -> None:
    store = FaissStore.create(DIM, "Flat", gpu=False)
    ids = _ids(len(data))
    store.add(ids, data)
    allow = ids[1::2]
    queries = data[:8]
    scores, found = store.search(queries, 5, allow=allow)
    assert np.isin(found, allow).all()
    assert (found == exact(data[1::2], allow, queries, 5)).all()
    _, none = store.search(queries, 5, allow=np.array([], dtype=np.int64))
    assert (none == -1).all()


def test_ivf_recall_against_flat() -> None:
    data = clustered(5000, DIM, centres=50, seed=3)
    ids = _ids(len(data))
    store = FaissStore.create(DIM, "IVF64,Flat", gpu=False)
    store.train(data)
    store.nprobe = 8
    store.add(ids, data)
    queries = clustered(100, DIM, centres=50, seed=3)[::1] + 0
    _, found = store.search(unit(queries + 0.01), 10)
    truth = exact(data, ids, unit(queries + 0.01), 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.9


def test_boundary_errors(data: np.ndarray) -> None:
    store = FaissStore.create(DIM, "Flat", gpu=False)
    with pytest.raises(ValueError, match="shape"):
        store.add(_ids(2), data[:2, :10])
    with pytest.raises(ValueError, match="NaN"):
        store.add(_ids(1), np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(ValueError, match="k must be"):
        store.search(data[:1], 0)
    with pytest.raises(ValueError, match="non-negative"):
        store.add(np.array([-1]), data[:1])
    with pytest.raises(ValueError, match="not a FAISS index type"):
        FaissStore.create(DIM, "Nonsense99")
    ivf = FaissStore.create(DIM, "IVF16,Flat", gpu=False)
    with pytest.raises(ValueError, match="trained"):
        ivf.add(_ids(1), data[:1])


def test_auto_spec_by_size() -> None:
    assert auto_spec(1000, 256) == "Flat"
    assert auto_spec(1_000_000, 256) == "IVF4096,Flat"
    assert auto_spec(10_000_000, 256) == "IVF16384,PQ64"


def test_a_tombstone_leaves_searches_as_soon_as_it_is_gone(data: np.ndarray) -> None:
    """The searches' selector of tombstones is kept between searches: it must follow every
    change (a remove adds tombstones; an upsert compacts them away; reset empties them)."""
    store = FaissStore.create(DIM, "HNSW16", gpu=False)
    store.ef_search = 512
    ids = _ids(len(data))
    store.add(ids, data)
    assert store.search(data[:1], 1)[1][0, 0] == ids[0]
    store.remove(ids[:1])
    assert store.search(data[:1], 1)[1][0, 0] != ids[0]
    store.remove(ids[1:2])  # one more tombstone, same set
    assert store.search(data[1:2], 1)[1][0, 0] != ids[1]
    store.add(ids[:1], data[:1])  # compaction: the tombstones go, id 0 is back
    assert store.search(data[:1], 1)[1][0, 0] == ids[0]
    assert store.search(data[1:2], 1)[1][0, 0] != ids[1]
    store.reset()
    store.add(ids[1:2], data[1:2])
    assert store.search(data[1:2], 1)[1][0, 0] == ids[1]
