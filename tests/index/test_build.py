from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index import generations
from index.build import build
from index.catalog import Catalog, NewItem, StaleCheckpoint
from index.cli import corpus_items
from index.records import bytes_hash, text_hash
from models.data.images import open_image
from tests.index.helpers import HashEncoder, make_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus")


def _build(root: Path, encoder: HashEncoder, corpus: Path, **kw: object):
    planned, levels = corpus_items(corpus)
    return build(root, encoder, planned, open_image, levels=levels, progress=False,
                 batch_size=4, **kw)


def _open(root: Path, encoder: HashEncoder) -> Catalog:
    return Catalog.open(root, checkpoint_id=encoder.checkpoint_id, dim=encoder.dim)


def _text_id(cat: Catalog, encoder: HashEncoder, text: str) -> int:
    return cat.search(encoder.encode_texts([text]), 1, "text")[0][0].id


def test_build_from_scratch(tmp_path: Path, corpus: Path) -> None:
    enc = HashEncoder()
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
    old_enc, new_enc = HashEncoder(salt="a"), HashEncoder(salt="b")
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
    assert generations.current(root) == report.generation


def test_writes_during_build_are_replayed(tmp_path: Path, corpus: Path) -> None:
    root = tmp_path / "idx"
    enc = HashEncoder()
    _build(root, enc, corpus)
    live = _open(root, enc)
    doomed = _text_id(live, enc, "caption number 2")

    class Busy(HashEncoder):
        """Writes to the live catalog while the build is embedding (a service at work)."""

        def encode_texts(self, texts: list[str]) -> np.ndarray:
            if self.calls == 1:
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

    class Dies(HashEncoder):
        def encode_images(self, images: list) -> np.ndarray:
            if self.calls >= 4:
                raise KeyboardInterrupt
            return super().encode_images(images)

    with pytest.raises(KeyboardInterrupt):
        _build(root, Dies(), corpus)
    assert generations.current(root) is None
    unfinished = generations.generations(root)
    assert len(unfinished) == 1 and (unfinished[0] / generations.BUILDING).exists()
    enc = HashEncoder()
    report = _build(root, enc, corpus)
    assert report.generation == unfinished[0]
    assert report.embedded < 22  # the committed batches were not embedded again
    assert report.counts == {"image": 10, "text": 12}
    assert not (report.generation / generations.BUILDING).exists()
