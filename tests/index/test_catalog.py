from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index.catalog import Catalog, ManifestMismatch, NewItem, StaleCheckpoint
from index.metadata import DATABASE
from index.records import bytes_hash, text_hash
from tests.index.helpers import clustered

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
    cat.close()
    again = Catalog.open(root, checkpoint_id=CKPT, dim=DIM)
    assert again.count() == 25
