"""`xmr data captions`: the Karpathy-split layout of COCO / Flickr imports as a label-free
corpus; strict by default, --skip-invalid lists what it left out."""

import json
from pathlib import Path

import pytest

from models.data.corpus import read_corpus
from tests.fixtures import CAPTIONS, KARPATHY_SPLITS, make_karpathy_layout
from xmr.cli import main


def run_import(src: Path, out: Path, *extra: str) -> int:
    return main(["data", "captions", str(src), str(out), *extra])


def test_imports_coco_layout_from_its_folder(tmp_path: Path, capsys) -> None:
    split_file = make_karpathy_layout(tmp_path / "coco")
    assert run_import(split_file.parent, tmp_path / "out") == 0  # SRC: the folder karpathy/
    corpus = read_corpus(tmp_path / "out")
    assert not corpus.labelled and corpus.levels == ()
    assert len(corpus.items) == sum(map(len, CAPTIONS))
    assert all(item.labels == () for item in corpus.items)
    by_id = {item.id: item for item in corpus.items}
    first = by_id["train2014/COCO_train2014_000000000000.jpg#1"]
    assert first.text == "a RED bus next to a kerb"  # whitespace collapsed, case kept
    assert first.image == "images/train2014/COCO_train2014_000000000000.jpg"
    assert (tmp_path / "out" / first.image).is_file()
    # Every caption is a line of its image; val and restval go to train.
    expected = {"train": "train", "val": "train", "restval": "train", "test": "test"}
    for n, (captions, split) in enumerate(zip(CAPTIONS, KARPATHY_SPLITS, strict=True)):
        lines = [item for item in corpus.items if f"_{n:012d}." in item.image]
        assert [item.text for item in lines] == [" ".join(c.split()) for c in captions]
        assert {item.split for item in lines} == {expected[split]}
    assert len(corpus.split("test")) == len(CAPTIONS[3]) + len(CAPTIONS[5])
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").open()]
    assert all("labels" not in row for row in rows)
    assert json.loads((tmp_path / "out" / "labels.json").read_text())["levels"] == []
    out = capsys.readouterr().out
    assert "items: 12 (train 8, test 4)" in out and "no labels" in out


def test_imports_flickr_layout_from_the_file(tmp_path: Path) -> None:
    split_file = make_karpathy_layout(tmp_path / "f30k", layout="flickr30k")
    assert run_import(split_file, tmp_path / "out") == 0
    corpus = read_corpus(tmp_path / "out")
    assert {item.image for item in corpus.items} == {
        f"images/{1000 + n}.{'png' if n % 3 == 2 else 'jpg'}" for n in range(len(CAPTIONS))}
    assert all(corpus.image_path(item).is_file() for item in corpus.items)
    # Re-running into the same folder reuses what is there and gives the same corpus.
    assert run_import(split_file, tmp_path / "out") == 0
    assert read_corpus(tmp_path / "out").items == corpus.items


def edit(split_file: Path, change) -> None:
    doc = json.loads(split_file.read_text())
    change(doc["images"])
    split_file.write_text(json.dumps(doc))


def break_missing_image(split_file: Path) -> str:
    (split_file.parents[1] / "train2014" / "COCO_train2014_000000000004.jpg").unlink()
    return "images[4] (train2014/COCO_train2014_000000000004.jpg): "


def break_unreadable_image(split_file: Path) -> str:
    (split_file.parents[1] / "val2014" / "COCO_val2014_000000000001.jpg").write_bytes(b"\xff\xd8")
    return "images[1] (val2014/COCO_val2014_000000000001.jpg): "


def break_unknown_split(split_file: Path) -> str:
    edit(split_file, lambda images: images[2].update(split="dev"))
    return "images[2] (val2014/COCO_val2014_000000000002.png): split 'dev' is not one of"


def break_no_filename(split_file: Path) -> str:
    edit(split_file, lambda images: images[0].pop("filename"))
    return "images[0]: needs a \"filename\" string"


def break_escaping_path(split_file: Path) -> str:
    edit(split_file, lambda images: images[5].update(filepath="../../etc"))
    return "images[5] (../../etc/COCO_val2014_000000000005.png): image path must be relative"


def break_not_an_object(split_file: Path) -> str:
    edit(split_file, lambda images: images.insert(3, "COCO_x.jpg"))
    return "images[3]: not an object"


def break_no_sentences(split_file: Path) -> str:
    edit(split_file, lambda images: images[4].update(sentences=[]))
    return "images[4] (train2014/COCO_train2014_000000000004.jpg): no caption"


def break_duplicate_image(split_file: Path) -> str:
    edit(split_file, lambda images: images.append(dict(images[0])))
    return "images[6] (train2014/COCO_train2014_000000000000.jpg): image listed twice"


BREAKS = [break_missing_image, break_unreadable_image, break_unknown_split, break_no_filename,
          break_escaping_path, break_not_an_object, break_no_sentences, break_duplicate_image]


@pytest.mark.parametrize("breaker", BREAKS, ids=lambda f: f.__name__)
def test_bad_item_stops_the_import_or_is_listed(breaker, tmp_path: Path, capsys) -> None:
    split_file = make_karpathy_layout(tmp_path / "coco")
    message = breaker(split_file)
    assert run_import(split_file, tmp_path / "strict") == 2
    err = capsys.readouterr().err
    assert f"{split_file}: {message}" in err and "--skip-invalid" in err
    assert not (tmp_path / "strict" / "manifest.jsonl").exists()

    assert run_import(split_file, tmp_path / "skip", "--skip-invalid") == 0
    captured = capsys.readouterr()
    assert f"skipped: {split_file}: {message}" in captured.err
    assert "invalid item(s) left out" in captured.out
    images = {item.image for item in read_corpus(tmp_path / "skip").items}
    extra_entry = breaker in (break_duplicate_image, break_not_an_object)
    assert len(images) == len(CAPTIONS) - (not extra_entry)


def test_bad_caption_alone_is_left_out(tmp_path: Path, capsys) -> None:
    split_file = make_karpathy_layout(tmp_path / "coco")
    edit(split_file, lambda images: images[1]["sentences"][1].update(raw="\n"))
    where = f"{split_file}: images[1] (val2014/COCO_val2014_000000000001.jpg): sentences[1]"
    assert run_import(split_file, tmp_path / "strict") == 2
    assert f"{where} has no \"raw\" text" in capsys.readouterr().err

    assert run_import(split_file, tmp_path / "skip", "--skip-invalid") == 0
    assert "1 invalid item(s) left out" in capsys.readouterr().out
    texts = [item.text for item in read_corpus(tmp_path / "skip").items]
    assert "Two green parrots on a branch." in texts and "green birds" in texts
    assert len(texts) == sum(map(len, CAPTIONS)) - 1


def test_source_problems_name_the_file(tmp_path: Path, capsys) -> None:
    split_file = make_karpathy_layout(tmp_path / "coco")
    (split_file.parent / "dataset_flickr8k.json").write_text('{"images": []}')
    assert run_import(split_file.parent, tmp_path / "out") == 2
    assert "expected one dataset_*.json (found dataset_coco.json, dataset_flickr8k.json)" in (
        capsys.readouterr().err)
    assert run_import(split_file.parent / "dataset_flickr8k.json", tmp_path / "out") == 2
    err = capsys.readouterr().err
    # No bad item to leave out: the hint to skip bad items would not help.
    assert "dataset_flickr8k.json: no valid image" in err and "--skip-invalid" not in err
    split_file.write_text('{"annotations": []}')
    assert run_import(split_file, tmp_path / "out") == 2
    assert "no \"images\" list" in capsys.readouterr().err
    lone = make_karpathy_layout(tmp_path / "lone", layout="flickr30k")
    (tmp_path / "far").mkdir()
    (lone.parent / "flickr30k-images").rename(tmp_path / "far" / "away")
    assert run_import(lone, tmp_path / "out") == 2
    assert "none of its first images (1000.jpg, ...) is in a folder beside it" in (
        capsys.readouterr().err)
