"""One behaviour, two backends: every test here runs against FAISS and against Milvus, the
latter in both of its deployments:
- `milvus`: milvus-lite embedded, started per test on a temporary `.db` file (no URI set);
- `milvus-server`: a Milvus server reached over TCP at `http://127.0.0.1:PORT`, chosen through
  XMR_VECTOR_BACKEND / XMR_MILVUS_URI as the service chooses it. The server is milvus-lite's
  gRPC server run as a separate process (tests/index/milvus_server.py), one per module; every
  test's collections are dropped after it. This is the production code path (URI kept
  verbatim, one server holding every generation's collections, dropped on prune).

Each backend is also checked against exact search (numpy) on the same vectors, so the two
cannot agree on a wrong answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.backends import (
    BackendSettings,
    collection_name,
    create_store,
    load_store,
)
from index.settings import StoreSettings
from index.store import VectorStore
from tests.fixtures import random_unit
from tests.index.conftest import Server

DIM = 16
BACKENDS = ["faiss", "milvus", "milvus-server"]


def exact(base: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :k]
    return ids[order]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "milvus":
        pytest.importorskip("pymilvus")
        pytest.importorskip("milvus_lite")
    if request.param == "milvus-server":
        request.getfixturevalue("server_env")
    return str(request.param)


@pytest.fixture
def settings(backend: str) -> BackendSettings:
    if backend == "milvus-server":  # exactly what the service and `xmr index build` read
        made = StoreSettings().backend()
        assert made.backend == "milvus" and (made.milvus_uri or "").startswith("http://")
        return made
    return BackendSettings(backend=backend)


@pytest.fixture
def generation(tmp_path: Path) -> Path:
    path = tmp_path / "index" / "gen-0001"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def store(settings: BackendSettings, generation: Path) -> Iterator[VectorStore]:
    made = create_store(DIM, generation, settings)
    yield made
    made.close()


IDS = np.arange(200, dtype=np.int64) * 5 + 11  # ids are not row positions
BASE = random_unit(200, DIM, seed=0)


def test_search_matches_exact_search(store: VectorStore) -> None:
    store.add(IDS, BASE)
    queries = random_unit(12, DIM, seed=1)
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
    queries = random_unit(5, DIM, seed=2)
    _, ids = store.search(queries, 10, allow=allow)
    assert np.isin(ids, allow).all()
    assert np.array_equal(ids, exact(BASE[::3], allow, queries, 10))


def test_allow_smaller_than_k_pads_with_minus_one(store: VectorStore) -> None:
    store.add(IDS, BASE)
    scores, ids = store.search(random_unit(2, DIM, seed=3), 5, allow=IDS[:2])
    assert sorted(ids[0, :2].tolist()) == sorted(IDS[:2].tolist())
    assert (ids[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()
    _, none = store.search(random_unit(2, DIM, seed=3), 5, allow=np.zeros(0, dtype=np.int64))
    assert (none == -1).all()


def test_k_beyond_the_count_pads(store: VectorStore) -> None:
    store.add(IDS[:3], BASE[:3])
    scores, ids = store.search(random_unit(1, DIM, seed=4), 6)
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
    moved = random_unit(1, DIM, seed=5)
    store.add(IDS[:1], moved)
    assert store.count() == 200
    scores, ids = store.search(moved, 1)
    assert ids[0, 0] == IDS[0] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    _, old = store.search(BASE[:1], 1)
    assert old[0, 0] != IDS[0] or np.isclose(float(BASE[0] @ moved[0]), 1.0)


def test_boundary_checks_are_the_same(store: VectorStore) -> None:
    with pytest.raises(ValueError, match="shape"):
        store.add(IDS[:2], random_unit(2, DIM, seed=6)[:, :4])
    with pytest.raises(ValueError, match="ids for"):
        store.add(IDS[:3], random_unit(2, DIM, seed=6))
    with pytest.raises(ValueError, match="duplicate"):
        store.add(np.array([1, 1]), random_unit(2, DIM, seed=6))
    with pytest.raises(ValueError, match="non-negative"):
        store.add(np.array([-1]), random_unit(1, DIM, seed=6))
    with pytest.raises(ValueError, match="NaN"):
        store.add(np.array([1]), np.full((1, DIM), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="k must be"):
        store.search(random_unit(1, DIM, seed=6), 0)
    assert store.count() == 0


def test_save_and_load_keep_everything(settings: BackendSettings, generation: Path) -> None:
    store = create_store(DIM, generation, settings)
    store.add(IDS, BASE)
    store.remove(IDS[:10])
    store.save(generation)
    before = store.search(BASE[10:20], 5)
    store.close()
    # load_store follows store.json, whatever the settings say now.
    doc = json.loads((generation / "store.json").read_text())
    if settings.milvus_uri:  # a server: the URI verbatim, nothing written beside the index
        assert doc["uri"] == settings.milvus_uri
        assert not (generation / "milvus.db").exists()
    loaded = load_store(generation, BackendSettings())
    try:
        kind = {"faiss": "MappedStore", "milvus": "MilvusStore"}[settings.backend]  # FAISS:
        # mapped, as every store searched on the CPU
        assert type(loaded).__name__ == kind
        assert loaded.count() == 190
        after = loaded.search(BASE[10:20], 5)
        assert np.array_equal(before[1], after[1])
        np.testing.assert_allclose(before[0], after[0], atol=1e-6)
    finally:
        loaded.close()


def test_backends_agree_with_each_other(tmp_path: Path) -> None:
    pytest.importorskip("milvus_lite")
    queries = random_unit(20, DIM, seed=7)
    found = {}
    for name in ("faiss", "milvus"):
        directory = tmp_path / name / "gen-0001"
        directory.mkdir(parents=True)
        store = create_store(DIM, directory, BackendSettings(backend=name))
        store.add(IDS, BASE)
        store.remove(IDS[::7])
        found[name] = store.search(queries, 10, allow=IDS[::2])
        store.close()
    assert np.array_equal(found["faiss"][1], found["milvus"][1])
    np.testing.assert_allclose(found["faiss"][0], found["milvus"][0], atol=1e-5)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    assert StoreSettings().backend() == BackendSettings()
    monkeypatch.setenv("XMR_VECTOR_BACKEND", "Milvus")
    monkeypatch.setenv("XMR_MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("XMR_MILVUS_INDEX", "hnsw")
    assert StoreSettings().backend() == BackendSettings("milvus", "http://milvus:19530", "",
                                                        "HNSW")
    monkeypatch.setenv("XMR_VECTOR_BACKEND", "annoy")
    with pytest.raises(ValidationError, match="vector_backend"):
        StoreSettings()
    with pytest.raises(ValueError, match="unknown vector backend"):
        BackendSettings("annoy")


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


def _catalog_session(root: Path, settings: BackendSettings | None) -> dict[str, object]:
    """Ingest, re-ingest, filter, delete, close, reopen: what each step returned.
    `settings` None: the library default (FAISS)."""
    from index.catalog import Catalog

    vectors = random_unit(120, DIM, seed=11)
    queries = random_unit(6, DIM, seed=12)
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
    faiss_run = _catalog_session(tmp_path / "faiss-index", BackendSettings("faiss"))
    milvus_run = _catalog_session(tmp_path / "milvus-index", BackendSettings("milvus"))
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
        store.close()
        assert drop_external_stores(generation) == 0  # nothing lives outside the directory


# -- the production path: a Milvus server URI from the environment ----------------------------


def test_catalog_on_a_milvus_server_behaves_as_on_faiss(tmp_path: Path, server_env: Server) -> None:
    """The service's own path: its settings read XMR_VECTOR_BACKEND and XMR_MILVUS_URI, and
    every answer matches the FAISS run's."""
    milvus_run = _catalog_session(tmp_path / "server-index", StoreSettings().backend())
    faiss_run = _catalog_session(tmp_path / "faiss-index", BackendSettings("faiss"))
    assert not list((tmp_path / "server-index").rglob("milvus.db"))  # all on the server
    assert server_env.new_collections() == {
        "xmr_server_index_gen_0001_image", "xmr_server_index_gen_0001_text",
        "xmr_server_index_gen_0001_caption"}
    assert milvus_run == faiss_run


@pytest.mark.slow  # three builds (about 4 s on the 2-core box); `make test-slow`
def test_rebuilds_on_a_milvus_server_swap_and_prune_collections(tmp_path: Path,
                                                                server_env: Server) -> None:
    """`xmr index build`'s job with XMR_MILVUS_URI set: each generation writes its own
    collections beside the live ones on the shared server, the swap is the CURRENT rename, and
    pruning an old generation drops its collections on the server (not only its directory)."""
    from index import layout
    from index.build import build
    from index.catalog import Catalog
    from index.cli import corpus_items
    from tests.index.helpers import HashEmbedder, hash_engine, make_corpus

    planned, levels = corpus_items(make_corpus(tmp_path / "corpus"))
    root = tmp_path / "idx"

    def collections(*gens: int) -> set[str]:
        return {f"xmr_idx_gen_{g:04d}_{m}" for g in gens for m in ("image", "text")}

    for salt in ("a", "b", "c"):
        report = build(root, hash_engine(HashEmbedder(salt=salt)), planned, levels=levels,
                       backend=StoreSettings().backend())
        assert report.counts == {"image": 10, "text": 12}
    # gen-0001 was pruned (the live one and one before it are kept): its collections went too.
    assert [g.name for g in layout.generations(root)] == ["gen-0002", "gen-0003"]
    assert server_env.new_collections() == collections(2, 3)

    enc = HashEmbedder(salt="c")
    cat = Catalog.open(root, checkpoint_id=enc.checkpoint_id, dim=enc.dim)
    try:
        hit = cat.search(enc.encode_texts(["caption number 3"]), 1, "text")[0][0]
        assert hit.record.text == "caption number 3" and hit.score == pytest.approx(1, abs=1e-5)
        warm = cat.search(enc.encode_texts(["caption number 0"]), 20, "text",
                          {"group": "warm"})[0]
        assert len(warm) == 6 and all(h.record.labels[0] == "warm" for h in warm)
    finally:
        cat.close()


def test_pruning_drops_a_generations_collections_on_the_server(tmp_path: Path,
                                                               server_env: Server) -> None:
    from index.backends import drop_external_stores

    generation = tmp_path / "idx" / "gen-0001"
    store = create_store(DIM, generation, StoreSettings().backend(), name="text")
    for seq in (0, 5):  # two snapshots name the same collection: dropped once
        store.save(generation / "snapshots" / f"snap-{seq:012d}" / "text")
    store.close()
    assert server_env.new_collections() == {"xmr_idx_gen_0001_text"}
    assert drop_external_stores(generation) == 1
    assert server_env.new_collections() == set()
