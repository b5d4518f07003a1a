"""The official OpenMoji split, from the real wheel and the shipped emoji-test.txt."""

from pathlib import Path

from PIL import Image

from models.data.importers.openmoji import (
    Emoji,
    emoji_test_lines,
    official_emoji,
    render_png,
    svg_dir,
)


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
