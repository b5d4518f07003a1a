"""models.lexical: what matches what, in several scripts, and user text that never reaches
FTS5's query language."""

from __future__ import annotations

import numpy as np
import pytest

from models.lexical import (
    MAX_QUERY_TERMS,
    bm25_matrix,
    document,
    prepare,
    terms,
)

DOCS = [document(words) for words in ("grinning cat face", "café au lait", "北京大学的图书馆",
                                      "すし 寿司屋", "pizza slice", "red apple", "green apple")]


def best(query: str) -> int | None:
    scores = bm25_matrix([query], DOCS)[0]
    return int(scores.argmax()) if scores.max() > 0 else None


@pytest.mark.parametrize(("query", "doc"), [
    ("cat", 0), ("cats", 0), ("Grinning", 0),            # case and Porter stemming
    ("cafe", 1), ("CAFÉ", 1),                             # diacritics removed both ways
    ("北京", 2), ("图书馆", 2), ("大学", 2),                # Chinese, no spaces: bigrams
    ("寿司", 3), ("すし", 3),                              # Japanese kanji and kana
    ("pizza", 4),
])
def test_words_find_their_document(query: str, doc: int) -> None:
    assert best(query) == doc


def test_more_matching_words_rank_higher() -> None:
    scores = bm25_matrix(["red apple"], DOCS)[0]
    assert scores[5] > scores[6] > 0
    assert scores[[0, 1, 2, 3, 4]].max() == 0


@pytest.mark.parametrize("query", [
    '"', '"cat', 'cat" OR "x', "NEAR(cat face)", "cat*", "^cat", "body:cat", "cat AND",
    "OR", "NOT cat", "-cat", "(cat", "cat)))", "🍕🐱", "!!! ??? ...", "\x00cat\x01",
    "a" * 10_000, "cat " * 5_000, "",
])
def test_user_text_is_never_query_syntax(query: str) -> None:
    scores = bm25_matrix([query], DOCS)  # would raise sqlite3.OperationalError on bad syntax
    assert scores.shape == (1, len(DOCS))
    if "cat" in query.lower():
        assert scores[0, 0] > 0


def test_no_words_finds_nothing() -> None:
    assert terms("🍕 !!! ...") == [] and terms("") == []
    assert not bm25_matrix(["🍕"], DOCS).any()


def test_terms_are_bounded_and_distinct() -> None:
    words = terms(" ".join(f"w{i}" for i in range(1000)) + " w1 w2")
    assert len(words) == MAX_QUERY_TERMS and len(set(words)) == len(words)
    assert terms("Cat cat CAT") == ["cat"]


def test_labels_are_words_of_the_document() -> None:
    docs = [document("grinning face", ["Smileys & Emotion", "face-smiling"]),
            document("red apple", ["Food & Drink", "food-fruit"])]
    assert bm25_matrix(["fruit"], docs)[0].argmax() == 1
    assert bm25_matrix(["smiling"], docs)[0, 1] == 0


def test_prepare_splits_cjk_runs_only() -> None:
    assert prepare("北京大学").split() == ["北京", "京大", "大学"]
    assert prepare("猫 cat").split() == ["猫", "cat"]
    assert prepare("plain words") == "plain words"
    assert np.array_equal(bm25_matrix(["x"], []), np.zeros((1, 0)))


@pytest.mark.parametrize("chinese", [False, True])
def test_words_find_their_category_in_an_imported_wikipedia_corpus(tmp_path, chinese: bool
                                                                    ) -> None:
    """The Wikipedia-layout importer's corpus, English and Chinese: a word of a category's
    texts (two characters of Chinese, no spaces anywhere) ranks that category's rows first."""
    from models.data.corpus import read_corpus
    from tests.fixtures import CHINESE, ENGLISH, make_wikipedia_layout
    from xmr.cli import main as xmr

    out = tmp_path / "corpus"
    src = make_wikipedia_layout(tmp_path / "src", chinese=chinese)
    assert xmr(["data", "wikipedia", str(src), str(out)]) == 0
    items = read_corpus(out).items
    docs = [document(item.text, item.labels) for item in items]
    words = {"art": "油画" if chinese else "painting",
             "biology": "细胞" if chinese else "tissue",
             "geography": "河流" if chinese else "river"}
    texts = CHINESE if chinese else ENGLISH
    for category, word in words.items():
        assert word in texts[category]
        scores = bm25_matrix([word], docs)[0]
        hits = [i for i in np.argsort(-scores) if scores[i] > 0]
        assert hits and all(texts[category] in items[i].text for i in hits), (category, word)
