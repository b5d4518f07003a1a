from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index.catalog import Catalog, ManifestMismatch, NewItem, StaleCheckpoint
from index.database import DATABASE
from index.mapped import MappedStore
from index.records import bytes_hash, text_hash
from tests.index.helpers import clustered, exact

DIM = 16
CKPT = "ckpt-a"


def texts(n: int, start: int = 0, labels: tuple[str, ...] = ("animals", "cat")) -> list[NewItem]:
    return [NewItem("text", text_hash(f"caption {i}"), labels, text=f"caption {i}")
            for i in range(start, start + n)]


def images(n: int, labels: tuple[str, ...] = ("animals", "dog")) -> list[NewItem]:
    return [NewItem("image", bytes_hash(b"img%d" % i), labels, source=f"/media/{i}.png")
            for i in range(n)]


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    return Catalog.open(tmp_path / "idx", checkpoint_id=CKPT, dim=DIM, levels=("group", "sub"))


def test_ingest_search_get_delete(cat: Catalog) -> None:
    vectors = clustered(20, DIM, seed=1)
    done = cat.ingest(texts(10) + images(10), vectors)
    assert all(created for _, created in done)
    ids = [i for i, _ in done]
    assert len(set(ids)) == 20
    hits = cat.search(vectors[:3], 1, "text")
    assert [h[0].id for h in hits] == ids[:3]
    assert hits[0][0].record.text == "caption 0" and hits[0][0].score == pytest.approx(1, abs=1e-5)
    image_hits = cat.search(vectors[:1], 20, "image")[0]
    assert {h.id for h in image_hits} == set(ids[10:])  # modality of the results
    record = cat.get(ids[12])
    assert record is not None and record.source == "/media/2.png"
    assert record.labels == ("animals", "dog") and record.checkpoint_id == CKPT
    assert cat.delete(ids[0]) and not cat.delete(ids[0])
    assert cat.get(ids[0]) is None
    assert ids[0] not in [h.id for h in cat.search(vectors[:1], 10, "text")[0]]
    assert cat.count() == 19 and cat.count("text") == 9


def test_same_content_returns_existing_id(cat: Catalog) -> None:
    vectors = clustered(3, DIM, seed=2)
    first = cat.ingest(texts(2), vectors[:2])
    again = cat.ingest([*texts(1), NewItem("text", text_hash("caption  0 "), text="x")],
                       vectors[1:3])
    assert again == [(first[0][0], False), (first[0][0], False)]
    assert cat.count("text") == 2


def test_label_filter(cat: Catalog) -> None:
    vectors = clustered(6, DIM, seed=3)
    done = cat.ingest(texts(3, 0, ("animals", "cat")) + texts(3, 3, ("food", "fruit")), vectors)
    hits = cat.search(vectors[:1], 10, "text", labels={"group": "food"})[0]
    assert {h.id for h in hits} == {i for i, _ in done[3:]}
    assert cat.search(vectors[:1], 10, "text", labels={"sub": "none"}) == [[]]
    with pytest.raises(ValueError, match="unknown label level"):
        cat.search(vectors[:1], 3, "text", labels={"colour": "red"})


def test_boundary_errors(cat: Catalog) -> None:
    vectors = clustered(2, DIM, seed=4)
    with pytest.raises(ValueError, match="shape"):
        cat.search(vectors[:, :8], 3, "text")
    with pytest.raises(ValueError, match="unit rows"):
        cat.ingest(texts(1), vectors[:1] * 3)
    with pytest.raises(ValueError, match="NaN"):
        cat.search(np.full((1, DIM), np.nan, np.float32), 3, "text")
    with pytest.raises(ValueError, match="k must be"):
        cat.search(vectors[:1], 0, "text")
    with pytest.raises(ValueError, match="modality"):
        cat.search(vectors[:1], 3, "audio")
    with pytest.raises(ValueError, match="1 items but 2"):
        cat.ingest(texts(1), vectors)
    with pytest.raises(ValueError, match="needs a non-empty text"):
        NewItem("text", "h")
    with pytest.raises(StaleCheckpoint):
        cat.ingest(texts(1), vectors[:1], checkpoint_id="ckpt-b")


def test_manifest_ties_checkpoint_and_dim(tmp_path: Path) -> None:
    Catalog.open(tmp_path / "idx", checkpoint_id=CKPT, dim=DIM).close()
    with pytest.raises(ManifestMismatch, match="built with checkpoint ckpt-a"):
        Catalog.open(tmp_path / "idx", checkpoint_id="ckpt-b", dim=DIM)
    with pytest.raises(ManifestMismatch, match="16-d"):
        Catalog.open(tmp_path / "idx", checkpoint_id=CKPT, dim=32)


def test_recovery_without_snapshot_and_after_lost_faiss_write(tmp_path: Path) -> None:
    """A process that dies after commits but before any snapshot: the journal replays. The
    same when the FAISS snapshot and the database disagree in count: the store is rebuilt."""
    root = tmp_path / "idx"
    first = Catalog.open(root, checkpoint_id=CKPT, dim=DIM)
    vectors = clustered(30, DIM, seed=5)
    done = first.ingest(texts(30), vectors)
    first.delete(done[0][0])
    # no close(): the snapshot on disk is the empty one written at creation
    second = Catalog.open(root, checkpoint_id=CKPT, dim=DIM)
    assert second.count("text") == 29
    hits = second.search(vectors[1:], 1, "text")
    assert [h[0].id for h in hits] == [i for i, _ in done[1:]]
    second.close()
    # a row that reached SQLite without its journal entry (cannot happen by our writes, but a
    # count mismatch must still be repaired): the store is rebuilt from the stored vectors
    db = sqlite3.connect(next(root.glob("gen-*")) / DATABASE)
    db.execute("INSERT INTO items (modality, content_hash, text, labels, checkpoint_id, vector)"
               " VALUES ('text', 'h', 'orphan', '[]', ?, ?)", (CKPT, vectors[0].tobytes()))
    db.commit()
    db.close()
    third = Catalog.open(root, checkpoint_id=CKPT, dim=DIM)
    assert third.count("text") == 30
    assert third.search(vectors[:1], 1, "text")[0][0].record.text == "orphan"


def test_second_process_view_catches_up(tmp_path: Path) -> None:
    root = tmp_path / "idx"
    writer = Catalog.open(root, checkpoint_id=CKPT, dim=DIM)
    reader = Catalog.open(root, checkpoint_id=CKPT, dim=DIM)
    vectors = clustered(5, DIM, seed=6)
    done = writer.ingest(texts(5), vectors)
    assert reader.search(vectors[:1], 1, "text")[0][0].id == done[0][0]
    writer.delete(done[0][0])
    assert reader.count("text") == 4


def test_snapshots_are_taken_and_reused(tmp_path: Path) -> None:
    root = tmp_path / "idx"
    cat = Catalog.open(root, checkpoint_id=CKPT, dim=DIM, snapshot_every=10)
    vectors = clustered(25, DIM, seed=7)
    for row in range(25):
        cat.ingest(texts(1, row), vectors[row:row + 1])
    snaps = list((next(root.glob("gen-*")) / "snapshots").glob("snap-*"))
    assert len(snaps) == 1 and int(snaps[0].name[5:]) >= 20
    store = cat._gen.stores["text"]  # maps the snapshot it wrote, holds only the writes since
    assert isinstance(store, MappedStore) and store.count() == 25 and store.delta.count() < 10
    cat.close()
    again = Catalog.open(root, checkpoint_id=CKPT, dim=DIM)
    assert again.count() == 25


def keyed(key: str, text: str, **metadata: object) -> NewItem:
    return NewItem("text", text_hash(text), ("animals", "cat"), text=text, key=key,
                   metadata=metadata)


def test_upsert_by_key_keeps_the_id_and_replaces_everything(cat: Catalog) -> None:
    vectors = clustered(3, DIM, seed=11)
    [(item_id, created)] = cat.ingest([keyed("sku-1", "red shoe", brand="acme")], vectors[:1])
    assert created
    record = cat.get_by_key("sku-1")
    assert record is not None and record.id == item_id
    assert (record.key, record.metadata, record.text) == ("sku-1", {"brand": "acme"}, "red shoe")
    again = cat.ingest([NewItem("text", text_hash("blue shoe"), ("food", "fruit"),
                                text="blue shoe", key="sku-1", metadata={"brand": "b"})],
                       vectors[1:2])
    assert again == [(item_id, False)] and cat.count() == 1
    hit = cat.search(vectors[1:2], 5, "text")[0]
    assert [(h.id, h.record.text, h.record.labels, h.record.metadata) for h in hit] == [
        (item_id, "blue shoe", ("food", "fruit"), {"brand": "b"})]
    assert hit[0].score == pytest.approx(1, abs=1e-5)  # the new vector, not the old one
    assert cat.search(vectors[:1], 5, "text", where={"brand": "acme"}) == [[]]
    gone = cat.delete_by_key("sku-1")
    assert gone is not None and gone.id == item_id and gone.text == "blue shoe"
    assert cat.delete_by_key("sku-1") is None and cat.get_by_key("sku-1") is None
    assert cat.get(item_id) is None and cat.search(vectors, 3, "text") == [[], [], []]


def test_upsert_may_change_modality(tmp_path: Path) -> None:
    root = tmp_path / "idx"
    cat = Catalog.open(root, checkpoint_id=CKPT, dim=DIM)
    vectors = clustered(2, DIM, seed=12)
    image = NewItem("image", bytes_hash(b"photo"), source="/media/p.png", key="k",
                    text="a caption")
    [(item_id, _)] = cat.ingest([image], vectors[:1])
    assert cat.search(vectors[:1], 1, "image")[0][0].record.text == "a caption"
    assert cat.ingest([keyed("k", "now a text")], vectors[1:]) == [(item_id, False)]
    assert (cat.count("image"), cat.count("text")) == (0, 1)
    reopened = Catalog.open(root, checkpoint_id=CKPT, dim=DIM)  # journal replay, no snapshot
    assert (reopened.count("image"), reopened.count("text")) == (0, 1)
    assert reopened.search(vectors[1:], 1, "text")[0][0].id == item_id


def test_keyed_items_may_share_content_unkeyed_ones_do_not(cat: Catalog) -> None:
    vectors = clustered(1, DIM, seed=13).repeat(4, axis=0)
    photo = {"modality": "image", "content_hash": bytes_hash(b"same"), "source": "/m/s.png"}
    done = cat.ingest([NewItem(**photo, key="a"), NewItem(**photo, key="b"),  # type: ignore[arg-type]
                       NewItem(**photo), NewItem(**photo)], vectors)  # type: ignore[arg-type]
    (a, new_a), (b, new_b), (plain, new_plain), (again, new_again) = done
    assert a != b and new_a and new_b
    assert (plain, new_plain, again, new_again) == (a, False, a, False)  # the first of that content
    assert cat.count("image") == 2
    cat.delete(a)
    assert cat.find("image", photo["content_hash"]) is not None  # b still uses the file
    cat.delete_by_key("b")
    assert cat.find("image", photo["content_hash"]) is None


def test_metadata_filter_is_exact_and_typed(cat: Catalog) -> None:
    n = 200
    vectors = clustered(n, DIM, seed=14)
    brands = ["acme" if i % 10 == 3 else "other" for i in range(n)]
    items = [keyed(f"k{i}", f"item {i}", brand=brands[i], n=i % 3, flag=i % 3 == 1,
                   nested={"brand": "acme"}) for i in range(n)]
    ids = np.array([i for i, _ in cat.ingest(items, vectors)])
    queries = clustered(5, DIM, seed=15)
    acme = np.array([b == "acme" for b in brands])
    hits = cat.search(queries, 10, "text", where={"brand": "acme"})
    assert [[h.id for h in row] for row in hits] == exact(
        vectors[acme], ids[acme], queries, 10).tolist()  # the same top 10 as a naive scan
    ones = {h.id for h in cat.search(queries[:1], n, "text", where={"n": 1.0})[0]}
    assert ones == {int(ids[i]) for i in range(n) if i % 3 == 1}  # 1.0 == 1 but true != 1
    flags = {h.id for h in cat.search(queries[:1], n, "text", where={"flag": True})[0]}
    assert flags == ones
    both = cat.search(queries[:1], n, "text", labels={"sub": "cat"},
                      where={"brand": "acme", "n": 0})[0]
    assert {h.id for h in both} == {int(ids[i]) for i in range(n) if acme[i] and i % 3 == 0}
    assert cat.search(queries[:1], 5, "text", where={"colour": "red"}) == [[]]
    with pytest.raises(ValueError, match="compare"):
        cat.search(queries[:1], 5, "text", where={"nested": {"brand": "acme"}})
    with pytest.raises(ValueError, match="where must be an object"):
        cat.search(queries[:1], 5, "text", where=[("brand", "acme")])  # type: ignore[arg-type]


def test_search_by_a_stored_item(cat: Catalog) -> None:
    vectors = clustered(6, DIM, seed=16)
    image = NewItem("image", bytes_hash(b"cat"), source="/m/cat.png", key="cat",
                    metadata={"shop": "x"})
    done = cat.ingest([image, *texts(5)], vectors)
    image_id, text_ids = done[0][0], [i for i, _ in done[1:]]
    by_key = cat.similar(5, "text", key="cat")
    assert by_key is not None
    assert [h.id for h in by_key] == [h.id for h in cat.search(vectors[:1], 5, "text")[0]]
    assert set(text_ids) == {h.id for h in by_key}
    by_id = cat.similar(5, "text", item_id=text_ids[0])
    assert by_id is not None and text_ids[0] not in {h.id for h in by_id}  # not itself
    assert len(by_id) == 4
    assert [h.id for h in cat.similar(3, "image", item_id=text_ids[0]) or []] == [image_id]
    filtered = cat.similar(5, "text", item_id=text_ids[0], labels={"group": "animals"})
    assert filtered is not None and {h.id for h in filtered} == set(text_ids[1:])
    assert cat.similar(5, "image", key="cat") == []  # the only image is the item itself
    assert cat.similar(5, "image", key="dog") is None
    assert cat.similar(5, "image", item_id=10_000) is None
    with pytest.raises(ValueError, match="exactly one"):
        cat.similar(5, "image", item_id=image_id, key="cat")


@pytest.mark.parametrize("key, reason", [("", "1-256"), ("x" * 257, "1-256"),
                                         ("a\nb", "control"), (7, "string")])
def test_bad_keys_are_refused(key: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        NewItem("text", "h", text="t", key=key)  # type: ignore[arg-type]


@pytest.mark.parametrize("metadata, reason", [
    ([1, 2], "JSON object"), ({"a": {1, 2}}, "plain JSON"), ({"x": float("nan")}, "plain JSON"),
    ({1: "a"}, "names must be strings"), ({"big": "é" * 8200}, "at most 16384")])
def test_bad_metadata_is_refused(metadata: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        NewItem("text", "h", text="t", metadata=metadata)  # type: ignore[arg-type]


def test_metadata_is_copied_and_at_the_limit_accepted(cat: Catalog) -> None:
    mutable = {"tags": ["a"], "fill": "x" * (16 * 1024 - 30)}
    item = NewItem("text", "h", text="t", key="k", metadata=mutable)
    mutable["tags"].append("b")
    cat.ingest([item], clustered(1, DIM, seed=17))
    record = cat.get_by_key("k")
    assert record is not None and record.metadata["tags"] == ["a"]
    assert NewItem("text", "h", text="t", key="x" * 256).key == "x" * 256


OLD_SCHEMA = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    modality TEXT NOT NULL CHECK (modality IN ('image', 'text')),
    content_hash TEXT NOT NULL,
    source TEXT,
    text TEXT,
    labels TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (modality, content_hash)
);
CREATE TABLE labels (
    item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    level INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (item_id, level)
);
CREATE INDEX labels_by_value ON labels (level, value);
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('add', 'del')),
    item_id INTEGER NOT NULL,
    modality TEXT NOT NULL
);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def test_an_index_made_before_keys_opens_and_takes_keys(tmp_path: Path) -> None:
    """A database of the schema without keys (written here as that release wrote it): opening
    migrates it once, keeping ids, vectors, labels, the journal and ids reserved by a job."""
    root = tmp_path / "idx"
    Catalog.open(root, checkpoint_id=CKPT, dim=DIM, levels=("group", "sub")).close()
    path = next(root.glob("gen-*")) / DATABASE
    path.unlink()
    vectors = clustered(3, DIM, seed=18)
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    for n, item in enumerate(texts(3)):
        db.execute("INSERT INTO items (modality, content_hash, text, labels, checkpoint_id,"
                   " vector) VALUES ('text', ?, ?, '[\"animals\", \"cat\"]', ?, ?)",
                   (item.content_hash, item.text, CKPT, vectors[n].tobytes()))
        db.executemany("INSERT INTO labels VALUES (?, ?, ?)",
                       [(n + 1, 0, "animals"), (n + 1, 1, "cat")])
        db.execute("INSERT INTO journal (op, item_id, modality) VALUES ('add', ?, 'text')",
                   (n + 1,))
    db.execute("UPDATE sqlite_sequence SET seq = 50 WHERE name = 'items'")  # reserved by a job
    db.commit()
    db.close()
    cat = Catalog.open(root, checkpoint_id=CKPT, dim=DIM)
    hits = cat.search(vectors, 1, "text", labels={"sub": "cat"})
    assert [(h[0].id, h[0].record.key, h[0].record.metadata) for h in hits] == [
        (1, None, {}), (2, None, {}), (3, None, {})]
    assert cat.ingest(texts(1), vectors[:1]) == [(1, False)]  # unkeyed: still one per content
    more = clustered(2, DIM, seed=19)
    done = cat.ingest([keyed("k", "caption 0", shop="s"), keyed("j", "new")], more)
    assert done == [(51, True), (52, True)]  # past the reserved ids; a key may share content
    assert cat.search(more[:1], 3, "text", where={"shop": "s"})[0][0].id == 51
    cat.close()
    assert Catalog.open(root, checkpoint_id=CKPT, dim=DIM).get_by_key("k") is not None
