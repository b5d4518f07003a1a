import json
from pathlib import Path

import pytest

from models.data.corpus import CorpusError, Item, read_corpus, summarize, write_corpus

LEVELS = ("coarse", "fine")
SETS = {"coarse": ["animal", "food"], "fine": ["cat", "dog", "pizza"]}


def items() -> list[Item]:
    return [
        Item("1", "images/a.png", "a cat", ("animal", "cat"), "train"),
        Item("2", "images/b.png", "a dog", ("animal", "dog"), "test"),
        Item("3", "images/a.png", "pizza slice", ("food", "pizza"), "train"),
    ]


def test_round_trip(tmp_path: Path) -> None:
    write_corpus(tmp_path, items(), LEVELS, SETS)
    corpus = read_corpus(tmp_path)
    assert corpus.items == tuple(items())
    assert corpus.levels == LEVELS and corpus.labelled
    assert [i.id for i in corpus.split("test")] == ["2"]
    assert corpus.label_index(1, corpus.items) == [0, 1, 2]
    assert "items: 3 (train 2, test 1)" in summarize(corpus)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": ["animal", "lion"]}, "label 'lion' is not in level 'fine'"),
        ({"labels": ["animal"]}, "1 labels, expected 2"),
        ({"text": "  "}, "empty text"),
        ({"split": "val"}, "split 'val'"),
        ({"image": "/etc/passwd"}, "must be relative"),
        ({"image": "../x.png"}, "must be relative"),
        ({"id": "1"}, "duplicate id '1'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, change: dict, message: str) -> None:
    write_corpus(tmp_path, items(), LEVELS, SETS)
    manifest = tmp_path / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[1].update(change)
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CorpusError, match=message) as err:
        read_corpus(tmp_path)
    assert "manifest.jsonl:2" in str(err.value)


def test_missing_files_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="labels.json: missing"):
        read_corpus(tmp_path)
    write_corpus(tmp_path, items(), LEVELS, SETS)
    (tmp_path / "manifest.jsonl").write_text('{"id": "1", \n')
    with pytest.raises(CorpusError, match="manifest.jsonl:1: not a manifest row"):
        read_corpus(tmp_path)


def test_label_free_round_trip(tmp_path: Path) -> None:
    pairs = [Item("a#0", "images/a.png", "a cat on a mat", (), "train"),
             Item("a#1", "images/a.png", "cat sleeping", (), "train"),
             Item("b#0", "images/b.png", "a dog", (), "test")]
    write_corpus(tmp_path, pairs, (), {})
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert all("labels" not in row for row in rows)
    corpus = read_corpus(tmp_path)
    assert corpus.items == tuple(pairs) and corpus.levels == () and not corpus.labelled
    assert "no labels" in summarize(corpus)


def test_labels_must_match_whether_the_corpus_has_levels(tmp_path: Path) -> None:
    write_corpus(tmp_path / "labelled", items(), LEVELS, SETS)
    manifest = tmp_path / "labelled" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    del rows[2]["labels"]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CorpusError, match="manifest.jsonl:3: 0 labels, expected 2"):
        read_corpus(tmp_path / "labelled")

    write_corpus(tmp_path / "free", [Item("1", "a.png", "a cat", (), "train")], (), {})
    manifest = tmp_path / "free" / "manifest.jsonl"
    manifest.write_text(manifest.read_text() + json.dumps(
        {"id": "2", "image": "b.png", "text": "a dog", "labels": ["animal"], "split": "test"}))
    with pytest.raises(CorpusError, match="manifest.jsonl:2: labels \\['animal'\\] in a corpus "
                                          "with no label level"):
        read_corpus(tmp_path / "free")
