"""One behaviour, two backends: every test here runs against FAISS and against Milvus
(milvus-lite, the real embedded Milvus server, started per test on a temporary file).

Each backend is also checked against exact search (numpy) on the same vectors, so the two
cannot agree on a wrong answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.backends import (
    BackendSettings,
    close_store,
    collection_name,
    create_store,
    load_store,
)
from index.store import VectorStore

DIM = 16
BACKENDS = ["faiss", "milvus"]


def unit(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def exact(base: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :k]
    return ids[order]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "milvus":
        pytest.importorskip("pymilvus")
        pytest.importorskip("milvus_lite")
    return str(request.param)


@pytest.fixture
def generation(tmp_path: Path) -> Path:
    path = tmp_path / "index" / "gen-0001"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def store(backend: str, generation: Path) -> Iterator[VectorStore]:
    made = create_store(DIM, generation, BackendSettings(backend=backend))
    yield made
    close_store(made)


IDS = np.arange(200, dtype=np.int64) * 5 + 11  # ids are not row positions
BASE = unit(200, seed=0)


def test_search_matches_exact_search(store: VectorStore) -> None:
    store.add(IDS, BASE)
    queries = unit(12, seed=1)
    scores, ids = store.search(queries, 10)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (12, 10)
    assert np.array_equal(ids, exact(BASE, IDS, queries, 10))
    np.testing.assert_allclose(scores, np.sort(queries @ BASE.T, axis=1)[:, ::-1][:, :10],
                               atol=1e-5)
    assert store.count() == 200


def test_a_stored_vector_finds_itself_first(store: VectorStore) -> None:
    store.add(IDS, BASE)
    scores, ids = store.search(BASE[[0, 7, 199]], 1)
    assert ids[:, 0].tolist() == IDS[[0, 7, 199]].tolist()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_allow_restricts_results_to_the_given_ids(store: VectorStore) -> None:
    store.add(IDS, BASE)
    allow = IDS[::3]
    queries = unit(5, seed=2)
    _, ids = store.search(queries, 10, allow=allow)
    assert np.isin(ids, allow).all()
    assert np.array_equal(ids, exact(BASE[::3], allow, queries, 10))


def test_allow_smaller_than_k_pads_with_minus_one(store: VectorStore) -> None:
    store.add(IDS, BASE)
    scores, ids = store.search(unit(2, seed=3), 5, allow=IDS[:2])
    assert sorted(ids[0, :2].tolist()) == sorted(IDS[:2].tolist())
    assert (ids[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()
    _, none = store.search(unit(2, seed=3), 5, allow=np.zeros(0, dtype=np.int64))
    assert (none == -1).all()


def test_k_beyond_the_count_pads(store: VectorStore) -> None:
    store.add(IDS[:3], BASE[:3])
    scores, ids = store.search(unit(1, seed=4), 6)
    assert sorted(ids[0, :3].tolist()) == sorted(IDS[:3].tolist())
    assert ids[0, 3:].tolist() == [-1, -1, -1] and np.isneginf(scores[0, 3:]).all()


def test_remove_is_never_returned_again_and_counts_only_present_ids(store: VectorStore) -> None:
    store.add(IDS, BASE)
    gone = IDS[:50]
    assert store.remove(np.concatenate([gone, [999_999]])) == 50
    assert store.remove(gone) == 0
    assert store.count() == 150
    _, ids = store.search(BASE[:50], 10)
    assert not np.isin(ids, gone).any()
    assert np.array_equal(ids, exact(BASE[50:], IDS[50:], BASE[:50], 10))


def test_add_of_a_present_id_replaces_its_vector(store: VectorStore) -> None:
    store.add(IDS, BASE)
    moved = unit(1, seed=5)
    store.add(IDS[:1], moved)
    assert store.count() == 200
    scores, ids = store.search(moved, 1)
    assert ids[0, 0] == IDS[0] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    _, old = store.search(BASE[:1], 1)
    assert old[0, 0] != IDS[0] or np.isclose(float(BASE[0] @ moved[0]), 1.0)


def test_boundary_checks_are_the_same(store: VectorStore) -> None:
    with pytest.raises(ValueError, match="shape"):
        store.add(IDS[:2], unit(2, seed=6)[:, :4])
    with pytest.raises(ValueError, match="ids for"):
        store.add(IDS[:3], unit(2, seed=6))
    with pytest.raises(ValueError, match="duplicate"):
        store.add(np.array([1, 1]), unit(2, seed=6))
    with pytest.raises(ValueError, match="non-negative"):
        store.add(np.array([-1]), unit(1, seed=6))
    with pytest.raises(ValueError, match="NaN"):
        store.add(np.array([1]), np.full((1, DIM), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="k must be"):
        store.search(unit(1, seed=6), 0)
    assert store.count() == 0


def test_save_and_load_keep_everything(backend: str, generation: Path) -> None:
    settings = BackendSettings(backend=backend)
    store = create_store(DIM, generation, settings)
    store.add(IDS, BASE)
    store.remove(IDS[:10])
    store.save(generation)
    before = store.search(BASE[10:20], 5)
    close_store(store)
    # load_store follows store.json, whatever the settings say now.
    loaded = load_store(generation, BackendSettings())
    try:
        assert type(loaded).__name__ == {"faiss": "FaissStore", "milvus": "MilvusStore"}[backend]
        assert loaded.count() == 190
        after = loaded.search(BASE[10:20], 5)
        assert np.array_equal(before[1], after[1])
        np.testing.assert_allclose(before[0], after[0], atol=1e-6)
    finally:
        close_store(loaded)


def test_backends_agree_with_each_other(tmp_path: Path) -> None:
    pytest.importorskip("milvus_lite")
    queries = unit(20, seed=7)
    found = {}
    for name in ("faiss", "milvus"):
        directory = tmp_path / name / "gen-0001"
        directory.mkdir(parents=True)
        store = create_store(DIM, directory, BackendSettings(backend=name))
        store.add(IDS, BASE)
        store.remove(IDS[::7])
        found[name] = store.search(queries, 10, allow=IDS[::2])
        close_store(store)
    assert np.array_equal(found["faiss"][1], found["milvus"][1])
    np.testing.assert_allclose(found["faiss"][0], found["milvus"][0], atol=1e-5)


def test_settings_come_from_the_environment() -> None:
    settings = BackendSettings.from_env({"XMR_VECTOR_BACKEND": "Milvus",
                                         "XMR_MILVUS_URI": "http://milvus:19530"})
    assert settings == BackendSettings("milvus", "http://milvus:19530", "", "FLAT")
    assert BackendSettings.from_env({}).backend == "faiss"
    with pytest.raises(ValueError, match="unknown vector backend"):
        BackendSettings.from_env({"XMR_VECTOR_BACKEND": "annoy"})


def test_collection_names_are_per_index_and_generation(tmp_path: Path) -> None:
    name = collection_name(tmp_path / "my-index" / "gen-0003", "image")
    assert name == "xmr_my_index_gen_0003_image"


# -- the catalog over each backend: the service's view --------------------------------------


def _items(n: int) -> list:
    from index.catalog import NewItem
    from index.records import bytes_hash, text_hash

    groups = ("animals", "food", "travel")
    out = []
    for i in range(n):
        labels = (groups[i % 3], f"sub{i % 5}")
        if i % 2:
            out.append(NewItem("text", text_hash(f"caption {i}"), labels, text=f"caption {i}"))
        else:
            out.append(NewItem("image", bytes_hash(b"img%d" % i), labels, source=f"/m/{i}.png"))
    return out


def _catalog_session(root: Path, backend: str) -> dict[str, object]:
    """Ingest, re-ingest, filter, delete, close, reopen: what each step returned."""
    from index.catalog import Catalog

    settings = BackendSettings(backend=backend)
    vectors = unit(120, seed=11)
    queries = unit(6, seed=12)
    seen: dict[str, object] = {}
    cat = Catalog.open(root, checkpoint_id="ck", dim=DIM, levels=("group", "sub"),
                       backend=settings)
    done = cat.ingest(_items(120), vectors)
    ids = [i for i, _ in done]
    seen["again"] = cat.ingest(_items(4), vectors[:4])
    seen["plain"] = [[h.id for h in row] for row in cat.search(queries, 10, "image")]
    seen["filtered"] = [[(h.id, h.record.labels) for h in row] for row in
                        cat.search(queries, 10, "text", labels={"group": "food", "sub": "sub1"})]
    for gone in ids[:30]:
        cat.delete(gone)
    seen["after_delete"] = [[h.id for h in row] for row in cat.search(queries, 10, "text")]
    seen["counts"] = (cat.count(), cat.count("image"), cat.count("text"))
    cat.close()
    again = Catalog.open(root, checkpoint_id="ck", dim=DIM, backend=BackendSettings())
    seen["reopened"] = [[h.id for h in row] for row in again.search(queries, 10, "text")]
    seen["scores"] = [[round(h.score, 5) for h in row] for row in again.search(queries, 5, "image")]
    again.close()
    return seen


def test_catalog_behaves_the_same_on_both_backends(tmp_path: Path) -> None:
    pytest.importorskip("milvus_lite")
    faiss_run = _catalog_session(tmp_path / "faiss-index", "faiss")
    milvus_run = _catalog_session(tmp_path / "milvus-index", "milvus")
    assert (tmp_path / "milvus-index" / "gen-0001" / "milvus.db").exists()
    assert not (tmp_path / "faiss-index" / "gen-0001" / "milvus.db").exists()
    assert faiss_run == milvus_run
    assert faiss_run["counts"] == (90, 45, 45)
    filtered = faiss_run["filtered"]
    assert isinstance(filtered, list) and filtered[0]
    assert all(labels == ("food", "sub1") for row in filtered for _, labels in row)


def test_pruning_leaves_milvus_lite_and_faiss_to_the_directory(tmp_path: Path) -> None:
    from index.backends import drop_external_stores

    for backend in ("faiss", "milvus"):
        generation = tmp_path / backend / "gen-0001"
        store = create_store(DIM, generation, BackendSettings(backend=backend), name="text")
        store.save(generation / "snapshots" / "snap-000000000000" / "text")
        close_store(store)
        assert drop_external_stores(generation) == 0  # nothing lives outside the directory
