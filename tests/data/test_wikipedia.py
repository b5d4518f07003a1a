import shutil
from pathlib import Path

import pytest

from models.data.corpus import read_corpus
from xmr.cli import main


def run_import(src: Path, out: Path, *extra: str) -> int:
    return main(["data", "wikipedia", str(src), str(out), *extra])


def test_imports_english(wikipedia_src: Path, tmp_path: Path, capsys) -> None:
    assert run_import(wikipedia_src, tmp_path / "out") == 0
    corpus = read_corpus(tmp_path / "out")
    assert len(corpus.items) == 12 and len(corpus.split("test")) == 3
    assert corpus.levels == ("category",)
    by_id = {item.id: item for item in corpus.items}
    # XML text: only what is inside <text>; numeric categories mapped to names.
    assert by_id["tart1"].text == "A painting of a portrait in oil with a golden frame 1"
    assert by_id["tbiology0"].labels == ("biology",) and by_id["tbiology0"].split == "test"
    assert (tmp_path / "out" / by_id["tart1"].image).is_file()
    assert "items: 12 (train 9, test 3)" in capsys.readouterr().out


def test_imports_chinese(wikipedia_src_chinese: Path, tmp_path: Path) -> None:
    assert run_import(wikipedia_src_chinese, tmp_path / "out") == 0
    texts = {item.text for item in read_corpus(tmp_path / "out").items}
    assert "这是一幅油画肖像，画框是金色的。 1" in texts


def break_missing_image(src: Path) -> str:
    (src / "images" / "art" / "iart2.jpg").unlink()
    return "iart2.jpg: no such file"


def break_unreadable_image(src: Path) -> str:
    (src / "images" / "art" / "iart2.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return "iart2.jpg: not a readable image"


def break_missing_text(src: Path) -> str:
    (src / "texts" / "tart2.txt").unlink()
    return "tart2.txt: missing text file"


def break_empty_text(src: Path) -> str:
    (src / "texts" / "tart2.txt").write_text("<text>  </text>", encoding="utf-8")
    return "tart2.txt: empty text"


def break_non_utf8_text(src: Path) -> str:
    (src / "texts" / "tart2.txt").write_bytes("caf\xe9".encode("latin-1"))
    return "tart2.txt: not UTF-8"


def break_unknown_label(src: Path) -> str:
    path = src / "trainset_txt_img_cat.list"
    path.write_text(path.read_text() + "tx\tiart2\tphysics\n")
    return "trainset_txt_img_cat.list:10: category 'physics' is not in categories.list"


def break_duplicate_id(src: Path) -> str:
    path = src / "trainset_txt_img_cat.list"
    path.write_text(path.read_text() + "tart2\tiart2\tart\n")
    return "duplicate id 'tart2'"


def break_bad_row(src: Path) -> str:
    path = src / "testset_txt_img_cat.list"
    path.write_text(path.read_text() + "only-one-field\n")
    return "testset_txt_img_cat.list:4: expected text_id<TAB>image_id<TAB>category"


BREAKS = [break_missing_image, break_unreadable_image, break_missing_text, break_empty_text,
          break_non_utf8_text, break_unknown_label, break_duplicate_id, break_bad_row]


@pytest.mark.parametrize("breaker", BREAKS, ids=lambda f: f.__name__)
def test_malformed_is_rejected_or_skipped(
    breaker, wikipedia_src: Path, tmp_path: Path, capsys
) -> None:
    message = breaker(wikipedia_src)
    assert run_import(wikipedia_src, tmp_path / "strict") == 2
    err = capsys.readouterr().err
    assert message in err and "--skip-invalid" in err
    assert not (tmp_path / "strict" / "manifest.jsonl").exists()

    assert run_import(wikipedia_src, tmp_path / "skip", "--skip-invalid") == 0
    captured = capsys.readouterr()
    assert message in captured.err
    assert "1 invalid item(s) left out" in captured.out
    assert len(read_corpus(tmp_path / "skip").items) in (11, 12)  # duplicate keeps the first


def test_missing_layout_files(wikipedia_src: Path, tmp_path: Path, capsys) -> None:
    shutil.copytree(wikipedia_src, tmp_path / "a")
    (tmp_path / "a" / "categories.list").unlink()
    assert run_import(tmp_path / "a", tmp_path / "out") == 2
    err = capsys.readouterr().err
    # A missing layout file is no bad item: --skip-invalid would stop on it too.
    assert "categories.list: missing" in err and "--skip-invalid" not in err
