from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index import layout
from index.build import build
from index.catalog import Catalog, NewItem, StaleCheckpoint
from index.cli import corpus_items
from index.database import DATABASE
from index.plan import as_new
from index.records import bytes_hash, text_hash
from models.data.images import open_image
from tests.index.helpers import HashEmbedder, hash_engine, make_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus")


def _build(root: Path, encoder: HashEmbedder, corpus: Path, **kw: object):
    planned, levels = corpus_items(corpus)
    return build(root, hash_engine(encoder), planned, levels=levels, **kw)


def _open(root: Path, encoder: HashEmbedder) -> Catalog:
    return Catalog.open(root, checkpoint_id=encoder.checkpoint_id, dim=encoder.dim)


def _text_id(cat: Catalog, encoder: HashEmbedder, text: str) -> int:
    return cat.search(encoder.encode_texts([text]), 1, "text")[0][0].id


def test_build_from_scratch(tmp_path: Path, corpus: Path) -> None:
    enc = HashEmbedder()
    report = _build(tmp_path / "idx", enc, corpus)
    assert report.counts == {"image": 10, "text": 12} and report.embedded == 22
    cat = _open(tmp_path / "idx", enc)
    assert cat.levels == ("group", "sub")
    hit = cat.search(enc.encode_texts(["caption number 3"]), 1, "text")[0][0]
    assert hit.record.text == "caption number 3" and hit.score == pytest.approx(1, abs=1e-5)
    assert hit.record.labels == ("warm", "warm0")
    warm = cat.search(enc.encode_texts(["caption number 0"]), 20, "text", {"group": "warm"})[0]
    assert len(warm) == 6 and all(h.record.labels[0] == "warm" for h in warm)
    image = cat.search(enc.encode_images([open_image(corpus / "images/4.png")]), 1, "image")
    assert image[0][0].record.source == str((corpus / "images/4.png").resolve())
    with pytest.raises(ValueError, match="built with checkpoint"):
        Catalog.open(tmp_path / "idx", checkpoint_id="other", dim=enc.dim)


def test_rebuild_keeps_ids_and_api_items_and_swaps(tmp_path: Path, corpus: Path) -> None:
    root = tmp_path / "idx"
    old_enc, new_enc = HashEmbedder(salt="a"), HashEmbedder(salt="b")
    _build(root, old_enc, corpus)
    live = _open(root, old_enc)
    corpus_id = _text_id(live, old_enc, "caption number 5")
    media = live.media_dir / "upload.png"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(media)
    user = [NewItem("text", text_hash("a user caption"), text="a user caption"),
            NewItem("image", bytes_hash(media.read_bytes()), source=str(media))]
    vectors = np.concatenate([old_enc.encode_texts(["a user caption"]),
                              old_enc.encode_images([open_image(media)])])
    user_ids = [i for i, _ in live.ingest(user, vectors)]
    first_gen = live.generation

    report = _build(root, new_enc, corpus)
    # the old generation keeps serving until reload
    assert live.generation == first_gen
    assert _text_id(live, old_enc, "caption number 5") == corpus_id
    assert live.reload() and live.checkpoint_id == new_enc.checkpoint_id
    assert not live.reload()
    with pytest.raises(StaleCheckpoint):  # the service's encoder is now the wrong one
        live.ingest([NewItem("text", text_hash("late"), text="late")],
                    old_enc.encode_texts(["late"]), checkpoint_id=old_enc.checkpoint_id)
    assert report.counts == {"image": 11, "text": 13}
    assert _text_id(live, new_enc, "caption number 5") == corpus_id
    assert _text_id(live, new_enc, "a user caption") == user_ids[0]
    record = live.get(user_ids[1])
    assert record is not None and record.checkpoint_id == new_enc.checkpoint_id
    hit = live.search(new_enc.encode_images([open_image(media)]), 1, "image")[0][0]
    assert hit.id == user_ids[1]
    assert layout.current(root) == report.generation


def test_writes_during_build_are_replayed(tmp_path: Path, corpus: Path) -> None:
    root = tmp_path / "idx"
    enc = HashEmbedder()
    _build(root, enc, corpus)
    live = _open(root, enc)
    doomed = _text_id(live, enc, "caption number 2")

    class Busy(HashEmbedder):
        """Writes to the live catalog while the build is embedding (a service at work)."""

        busy = True

        def encode_texts(self, texts: list[str]) -> np.ndarray:
            if self.busy:
                self.busy = False
                live.ingest([NewItem("text", text_hash("during"), text="during")],
                            enc.encode_texts(["during"]))
                live.delete(doomed)
            return super().encode_texts(texts)

    report = _build(root, Busy(), corpus)
    assert report.replayed >= 2
    # same checkpoint: the live catalog's next write moves to the new generation by itself
    done = live.ingest([NewItem("text", text_hash("after"), text="after")],
                       enc.encode_texts(["after"]))
    assert live.generation == report.generation.name
    fresh = _open(root, enc)
    assert _text_id(fresh, enc, "during") > 0 and fresh.get(doomed) is None
    assert fresh.get(done[0][0]) is not None
    assert fresh.count("text") == 12 - 1 + 2
    ids = [r[0] for r in fresh._gen.meta.db.execute("SELECT id FROM items")]
    assert len(ids) == len(set(ids))


def test_interrupted_build_resumes(tmp_path: Path, corpus: Path) -> None:
    root = tmp_path / "idx"

    class Dies(HashEmbedder):
        def encode_texts(self, texts: list[str]) -> np.ndarray:
            if self.calls >= 4:  # the images and one text batch are committed
                raise KeyboardInterrupt
            return super().encode_texts(texts)

    with pytest.raises(KeyboardInterrupt):
        _build(root, Dies(), corpus)
    assert layout.current(root) is None
    unfinished = layout.generations(root)
    assert len(unfinished) == 1 and (unfinished[0] / layout.BUILDING).exists()
    enc = HashEmbedder()
    report = _build(root, enc, corpus)
    assert report.generation == unfinished[0]
    assert report.embedded < 22  # the committed batches were not embedded again
    assert report.counts == {"image": 10, "text": 12}
    assert not (report.generation / layout.BUILDING).exists()


def test_corpus_row_ids_become_keys_and_images_carry_their_caption(
        tmp_path: Path, corpus: Path) -> None:
    enc = HashEmbedder()
    _build(tmp_path / "idx", enc, corpus)
    cat = _open(tmp_path / "idx", enc)
    image = cat.search(enc.encode_images([open_image(corpus / "images/4.png")]), 1, "image")[0][0]
    assert (image.record.key, image.record.text) == ("item4", "caption number 4")
    shared = cat.get_by_key("item0")  # images/0.png is also the image of row item10
    assert shared is not None and shared.text == "caption number 0"
    assert cat.get_by_key("item10") is None
    text = cat.get_by_key("item10:text")
    assert text is not None and text.text == "caption number 10" and text.modality == "text"
    assert cat.similar(1, "text", key="item4") is not None


def test_a_key_used_twice_in_a_corpus_is_refused(tmp_path: Path) -> None:
    from models.data.corpus import Item, read_corpus, write_corpus

    corpus = make_corpus(tmp_path / "corpus", n=2)
    Image.new("RGB", (8, 8), (9, 9, 9)).save(corpus / "images/new.png")
    rows = [*read_corpus(corpus).items,  # its image would be keyed as item0's text is
            Item("item0:text", "images/new.png", "another", ("warm", "warm1"), "train")]
    write_corpus(corpus, rows, ["group", "sub"], {"group": ["cold", "warm"],
                 "sub": [f"{g}{k}" for g in ("cold", "warm") for k in range(3)]})
    with pytest.raises(ValueError, match="keys used by two items"):
        corpus_items(corpus)


def test_rebuild_carries_keys_and_metadata_and_replays_upserts(
        tmp_path: Path, corpus: Path) -> None:
    root = tmp_path / "idx"
    old_enc, new_enc = HashEmbedder(salt="a"), HashEmbedder(salt="b")
    _build(root, old_enc, corpus)
    live = _open(root, old_enc)
    corpus_image = live.get_by_key("item4")
    assert corpus_image is not None
    user = NewItem("text", text_hash("mine"), text="mine", key="u1", metadata={"shop": "x"})
    [(user_id, _)] = live.ingest([user], old_enc.encode_texts(["mine"]))
    live.ingest([replace(as_new(corpus_image), metadata={"featured": True})],
                old_enc.encode_images([open_image(corpus / "images/4.png")]))

    class Busy(HashEmbedder):
        """Upserts and deletes by key on the live catalog while the build embeds."""

        busy = True

        def encode_texts(self, texts: list[str]) -> np.ndarray:
            if self.busy:
                self.busy = False
                live.ingest([replace(user, text="mine, v2", content_hash=text_hash("mine, v2"),
                                     metadata={"shop": "y"}),
                             NewItem("text", text_hash("late"), text="late", key="u2")],
                            old_enc.encode_texts(["mine, v2", "late"]))
                assert live.delete_by_key("item3:text") is not None
            return super().encode_texts(texts)

    report = _build(root, Busy(salt="b"), corpus)
    assert report.replayed >= 3
    fresh = _open(root, new_enc)
    got = fresh.get_by_key("u1")
    assert got is not None and (got.id, got.text, got.metadata) == (user_id, "mine, v2",
                                                                    {"shop": "y"})
    assert _text_id(fresh, new_enc, "mine, v2") == user_id  # re-embedded by the new encoder
    assert fresh.get_by_key("u2") is not None and fresh.get_by_key("item3:text") is None
    image = fresh.get_by_key("item4")
    assert image is not None and image.id == corpus_image.id
    assert image.metadata == {"featured": True}  # set through the service, kept
    assert fresh.search(new_enc.encode_texts(["x"]), 30, "image",
                        where={"featured": True})[0][0].id == corpus_image.id
    assert fresh.count("text") == 12 - 1 + 2


def test_rebuild_of_an_index_made_before_keys_keeps_its_ids(tmp_path: Path,
                                                            corpus: Path) -> None:
    root = tmp_path / "idx"
    enc = HashEmbedder()
    _build(root, enc, corpus)
    db = sqlite3.connect(layout.current(root) / DATABASE)  # type: ignore[operator]
    before = dict(db.execute("SELECT key, id FROM items"))
    db.execute("UPDATE items SET key = NULL")  # what a migrated index made before keys holds
    db.execute("UPDATE items SET text = NULL WHERE modality = 'image'")
    db.commit()
    db.close()
    report = _build(root, HashEmbedder(salt="b"), corpus)
    assert report.counts == {"image": 10, "text": 12}  # nothing indexed twice
    db = sqlite3.connect(report.generation / DATABASE)
    assert dict(db.execute("SELECT key, id FROM items")) == before


def test_progress_is_reported_as_numbers_and_unreadable_images_count_as_done(
        tmp_path: Path, corpus: Path) -> None:
    (corpus / "images" / "3.png").write_bytes(b"not a png")
    seen: list[tuple[int, int]] = []
    report = _build(tmp_path / "idx", HashEmbedder(), corpus,
                    progress=lambda done, total: seen.append((done, total)))
    assert report.skipped == [str((corpus / "images/3.png").resolve())]
    assert report.embedded == 21 and seen[-1] == (22, 22)
    assert [done for done, _ in seen] == sorted({done for done, _ in seen})  # one per batch


def test_follow_moves_to_the_new_generation_once_the_old_one_is_sealed(
        tmp_path: Path, corpus: Path) -> None:
    """What a service's searches do: another process's build is followed, nothing else."""
    root = tmp_path / "idx"
    old_enc, new_enc = HashEmbedder(salt="a"), HashEmbedder(salt="b")
    _build(root, old_enc, corpus)
    live = _open(root, old_enc)
    assert not live.follow() and live.checkpoint_id == old_enc.checkpoint_id
    _build(root, new_enc, corpus)
    assert live.follow() and live.checkpoint_id == new_enc.checkpoint_id
    assert not live.follow()
    assert _text_id(live, new_enc, "caption number 5") is not None
