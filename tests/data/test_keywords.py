"""CLDR keywords of the OpenMoji corpus: the shipped annotations, and that only train emoji's
keywords become training rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.data.corpus import CorpusError
from models.data.importers.openmoji import Emoji, emoji_rows
from models.data.keywords import (
    cldr_keywords,
    emoji_chars,
    other_keywords,
    read_keywords,
    write_keywords,
)


def test_cldr_keywords_of_known_emoji() -> None:
    cldr = cldr_keywords()
    assert len(cldr) > 1800
    assert set(cldr[emoji_chars("1F431")]) == {"cat", "face", "pet"}
    assert "sad" in cldr[emoji_chars("1F622")]
    # CLDR drops U+FE0F from its keys; so must the lookup
    assert "heart" in cldr[emoji_chars("2764-FE0F")]


def test_other_keywords_leave_out_the_name() -> None:
    assert other_keywords(("cry", "Crying Face", "sad"), "crying face") == ("cry", "sad")


def test_only_train_emoji_get_keyword_rows() -> None:
    train = Emoji("1F603", "grinning face with big eyes", "Smileys & Emotion", "face-smiling")
    test = Emoji("1F600", "grinning face", "Smileys & Emotion", "face-smiling")
    assert (train.split, test.split) == ("train", "test")
    rows = emoji_rows(train, ("happy", "mouth"))
    assert [(r.id, r.text) for r in rows] == [
        ("1F603", "grinning face with big eyes"), ("1F603~1", "happy"), ("1F603~2", "mouth")
    ]
    assert {r.image for r in rows} == {"images/1F603.png"} and {r.split for r in rows} == {"train"}
    assert [(r.id, r.text) for r in emoji_rows(test, ("face", "grin"))] == [
        ("1F600", "grinning face")
    ]


def test_keywords_file_round_trip_and_absence(tmp_path: Path) -> None:
    assert read_keywords(tmp_path) is None
    write_keywords(tmp_path, {"a": ["cat", "pet"]}, "test")
    assert read_keywords(tmp_path) == {"a": ("cat", "pet")}
    (tmp_path / "keywords.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(CorpusError, match="keywords.json"):
        read_keywords(tmp_path)
