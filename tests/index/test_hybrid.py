"""Hybrid search at the index layer (index.hybrid over index.words): every mode finds what it
should, filters hold in every mode, upserts and deletes keep the words with their item, and an
index made before hybrid search migrates on open."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index import layout, words
from index.catalog import Catalog, NewItem
from index.database import DATABASE
from index.records import bytes_hash, text_hash
from tests.index.helpers import unit

DIM = 8
WORDS = ["red apple", "green pear", "slice of pizza", "cat face", "café crème", "北京烤鸭"]


def vec(seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((1, DIM)))[0]


def image(n: int, caption: str, key: str | None = None, **metadata: object) -> NewItem:
    return NewItem("image", bytes_hash(f"img{n}".encode()), ("food" if n < 3 else "other",),
                   text=caption, source=f"/img/{n}.png", key=key, metadata=dict(metadata))


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    found = Catalog.open(tmp_path / "idx", checkpoint_id="c", dim=DIM, levels=("kind",))
    items = [image(n, w, key=f"k{n}") for n, w in enumerate(WORDS)]
    vectors = np.stack([vec(n) for n in range(len(WORDS))])
    captions = [vec(100 + n) for n in range(len(WORDS))]
    found.ingest(items, vectors, captions=captions)
    return found


def ids(hits: list) -> list[int]:
    return [h.id for h in hits]


def search(catalog: Catalog, text: str, query: np.ndarray, mode: str, k: int = 3,
           **filters: object) -> list:
    return catalog.search(query[None], k, "image", texts=[text], mode=mode,  # type: ignore[arg-type]
                          **filters)[0]  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "want"), [("pizza", 3), ("cafe", 5), ("烤鸭", 6),
                                            ("apples", 1)])
def test_lexical_finds_the_item_by_its_words(catalog: Catalog, text: str, want: int) -> None:
    hits = search(catalog, text, vec(999), "lexical")
    assert ids(hits) == [want]
    assert hits[0].signals is not None and hits[0].signals["lexical"] > 0


def test_hybrid_combines_and_explains(catalog: Catalog) -> None:
    from models.fusion import Fusion

    query = vec(1)  # the vector of the pear's image (id 2); the words say pizza (id 3)
    vector_only = search(catalog, "slice of pizza", query, "vector", k=1)
    assert ids(vector_only) == [2] and vector_only[0].signals is None
    even = Fusion("zscore", {"vector": 0.5, "lexical": 0.5})
    hybrid = catalog.search(query[None], 6, "image", texts=["slice of pizza"], mode="hybrid",
                            fusion=even)[0]
    assert set(ids(hybrid)[:2]) == {2, 3}  # the best image and the only words that match
    signals = {h.id: h.signals for h in hybrid}
    assert set(signals[3]) == {"vector", "caption", "lexical"}  # type: ignore[arg-type]
    assert signals[3]["lexical"] is not None and signals[2]["lexical"] is None  # type: ignore[index]
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)


def test_vector_weight_alone_is_the_vector_order(catalog: Catalog) -> None:
    from models.fusion import Fusion

    query = vec(4)
    plain = ids(search(catalog, "x", query, "vector", k=6))
    alone = catalog.search(query[None], 6, "image", texts=["pizza"], mode="hybrid",
                           fusion=Fusion("zscore", {"vector": 1.0}))[0]
    assert ids(alone) == plain


@pytest.mark.parametrize("mode", ["hybrid", "vector", "lexical"])
def test_filters_hold_in_every_mode(catalog: Catalog, mode: str) -> None:
    hits = search(catalog, "cat pizza", vec(3), mode, k=6, labels={"kind": "other"})
    assert hits and all(h.record.labels == ("other",) for h in hits)
    none = search(catalog, "pizza", vec(3), mode, k=6, where={"brand": "absent"})
    assert none == []


def test_upsert_and_delete_keep_words_with_the_item(catalog: Catalog) -> None:
    catalog.ingest([image(9, "blue whale", key="k3")], vec(9)[None], captions=[vec(109)])
    assert search(catalog, "cat", vec(9), "lexical") == []  # its old words are gone
    [hit] = search(catalog, "whale", vec(9), "lexical")
    assert hit.record.key == "k3" and hit.id == 4
    assert catalog.delete_by_key("k3") is not None
    assert search(catalog, "whale", vec(9), "lexical") == []
    gen = catalog._gen
    rows = words.ids(gen.meta.db)
    assert rows == {int(r[0]) for r in gen.meta.db.execute("SELECT id FROM items")}
    assert gen.stores["caption"].count() == gen.meta.count("caption") == len(WORDS) - 1


def test_lexical_ranking_follows_writes_of_another_catalog(catalog: Catalog,
                                                         tmp_path: Path) -> None:
    """The words in memory (BM25's postings) catch up from the journal, as the vector stores
    do, and then rank as postings read afresh from the database."""
    assert ids(search(catalog, "pizza", vec(0), "lexical")) == [3]  # its postings are built
    other = Catalog.open(tmp_path / "idx", checkpoint_id="c", dim=DIM, levels=("kind",))
    other.ingest([image(20, "pizza margherita"), image(2, "pizza slice", key="k0")],
                 np.stack([vec(20), vec(2)]), captions=[vec(120), vec(102)])
    other.delete_by_key("k2")  # "slice of pizza"
    other.close()
    found = search(catalog, "pizza slice", vec(0), "lexical", k=10)
    assert [h.record.text for h in found] == ["pizza slice", "pizza margherita"]
    gen = catalog._gen
    rowids, scores = gen.meta.lexicon("image").best(["pizza", "slice"], 10)
    assert ids(found) == rowids.tolist()
    assert [h.signals["lexical"] for h in found] == scores.tolist()  # type: ignore[index]


def test_text_fields_are_matched_when_the_index_names_them(tmp_path: Path) -> None:
    from dataclasses import replace

    from index.generation import create_generation
    from index.manifest import Manifest

    root = tmp_path / "idx"
    root.mkdir()
    manifest = replace(Manifest("c", DIM, ()), text_fields=("title",))
    layout.swap(root, create_generation(root, manifest))
    with Catalog.open(root, checkpoint_id="c", dim=DIM) as catalog:
        catalog.ingest([image(1, "a photo", title="Golden Retriever"),
                        image(2, "a photo", brand="Golden")], np.stack([vec(1), vec(2)]))
        hits = search(catalog, "retriever", vec(0), "lexical")
        assert ids(hits) == [1]
        assert ids(search(catalog, "golden", vec(0), "lexical")) == [1]  # brand is not named


def test_an_index_made_before_hybrid_search_migrates(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "idx"
    with Catalog.open(root, checkpoint_id="c", dim=DIM) as catalog:
        pair_text = NewItem("text", text_hash("slice of pizza"), (), text="slice of pizza")
        catalog.ingest([image(1, "slice of pizza"), pair_text], np.stack([vec(1), vec(50)]))
        live = layout.current(root)
    assert live is not None
    db = sqlite3.connect(live / DATABASE)  # as the release before hybrid search left it
    db.executescript("".join(f"DROP TABLE {t};" for t in words.TABLES.values())
                     + "DROP TABLE captions; DELETE FROM state;")
    db.close()
    with Catalog.open(root, checkpoint_id="c", dim=DIM) as catalog:
        hits = search(catalog, "pizza", vec(1), "hybrid", k=2)
        assert [h.record.modality for h in hits] == ["image"]
        # the caption vector came from the pair's text item
        assert hits[0].signals["caption"] == pytest.approx(float(vec(1) @ vec(50)))  # type: ignore[index]
        assert catalog.has_words("image")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="index.generation"):
        Catalog.open(root, checkpoint_id="c", dim=DIM).close()
    assert "rebuilding" not in caplog.text  # the rebuilt caption store was snapshotted


@pytest.mark.parametrize("release", ["before-hybrid", "release-hybrid-1"])
def test_an_index_written_by_an_earlier_release_answers_hybrid(tmp_path: Path,
                                                               release: str) -> None:
    """tests/index/index-*.tar.gz: index directories that earlier releases wrote (four
    image-text pairs, dim 8, the process killed after its last write: WAL not checkpointed),
    the release before hybrid search and the first with it (one lexical table for both
    modalities). Each opens, keeps its ids and vectors, and answers by words."""
    import tarfile

    with tarfile.open(Path(__file__).with_name(f"index-{release}.tar.gz")) as archive:
        archive.extractall(tmp_path, filter="data")
    root = tmp_path / ("oldidx" if release == "before-hybrid" else release)
    checkpoint = "release-before-hybrid" if release == "before-hybrid" else release
    with Catalog.open(root, checkpoint_id=checkpoint, dim=DIM) as catalog:
        assert catalog.count("image") == catalog.count("text") == 4
        assert catalog.has_words("image") and catalog.text_fields == ()
        record = catalog.get_by_key("k1")
        assert record is not None and record.text == "slice of pizza"
        # the query's vector: near the text vector of "slice of pizza" (its pair's, seed 101)
        query = unit(vec(101)[None] + 0.3 * vec(999)[None])
        hits = catalog.search(query, 2, "image", texts=["pizza"], mode="hybrid")[0]
        assert hits[0].id == record.id
        assert hits[0].signals is not None and hits[0].signals["lexical"] is not None
        by_vector = catalog.search(vec(1)[None], 1, "image")[0]  # its stored image vector
        assert by_vector[0].id == record.id and by_vector[0].score == pytest.approx(1.0)
        assert catalog._gen.stores["caption"].count() == 4  # from the pairs' text vectors
        assert words.ids(catalog._gen.meta.db) == set(range(1, 9))  # both modalities' words
