"""models.bm25 scores as SQLite FTS5's bm25() does, document for document, while documents are
added, replaced and removed; and ranks the best k with ties by rowid."""

from __future__ import annotations

import random
import sqlite3

import numpy as np
import pytest

from models.bm25 import Postings
from models.lexical import create_table, document, query_tokens, terms, tokenize

VOCABULARY = ["cat", "cats", "dog", "face", "grinning", "red", "apple", "café", "cafe", "pizza",
              "slice", "the", "with", "a", "北京大学", "寿司"]


def fts5_scores(db: sqlite3.Connection, query: str) -> dict[int, float]:
    """What FTS5 itself says: every matching row and its -bm25() (higher is better)."""
    words = terms(query)
    if not words:
        return {}
    match = " OR ".join('"' + word + '"' for word in words)
    return dict(db.execute("SELECT rowid, -bm25(t) FROM t WHERE t MATCH ?", (match,)))


def assert_same(db: sqlite3.Connection, postings: Postings, queries: list[str]) -> None:
    for query in queries:
        expected = fts5_scores(db, query)
        rowids, scores = postings.scores(query_tokens(query))
        assert sorted(rowids.tolist()) == sorted(expected), query
        for rowid, score in zip(rowids.tolist(), scores.tolist(), strict=True):
            assert score == pytest.approx(expected[rowid], rel=1e-12), query


def write(db: sqlite3.Connection, rows: dict[int, str]) -> None:
    for rowid, body in rows.items():
        db.execute("DELETE FROM t WHERE rowid = ?", (rowid,))
        db.execute("INSERT INTO t (rowid, body) VALUES (?, ?)", (rowid, body))


def test_scores_are_fts5_bm25_through_adds_replacements_and_removals() -> None:
    rng = random.Random(0)
    text = lambda n: " ".join(rng.choices(VOCABULARY, k=n))  # noqa: E731
    db = sqlite3.connect(":memory:")
    create_table(db, "t")
    postings = Postings()
    queries = ["cat", "cats face", "the with a", "cafe", "北京", "nothing", "cat cats",
               "zebra quokkas",
               *(text(3) for _ in range(60))]
    first = {rowid: document(text(rng.randint(1, 9))) for rowid in range(5, 400)}
    first |= {400: document("🍕"), 401: document("!!!")}  # rows holding no token count too
    first |= {402: document("zebra quokka"), 403: document("quokka")}  # rare: few postings
    write(db, first)
    postings.set(zip(first, tokenize(list(first.values())), strict=True))
    assert_same(db, postings, queries)

    gone = list(range(5, 300, 2))  # more than a quarter: the stale postings are cut out
    db.executemany("DELETE FROM t WHERE rowid = ?", [(r,) for r in gone])
    postings.remove(gone)
    assert_same(db, postings, queries)  # what the queries above computed is not kept past a write
    changed = {rowid: document(text(4)) for rowid in [*range(6, 120, 5), *range(500, 540)]}
    write(db, changed)
    postings.set(zip(changed, tokenize(list(changed.values())), strict=True))
    assert len(postings) == db.execute("SELECT count(*) FROM t").fetchone()[0]
    assert_same(db, postings, queries)


def test_loading_postings_at_once_scores_as_adding_documents() -> None:
    docs = {3: "grinning cat face", 9: "cat cat cat", 12: "red apple", 20: "🍕"}
    tokens = dict(zip(docs, tokenize(list(docs.values())), strict=True))
    by_token: dict[str, tuple[list[int], list[int]]] = {}
    for rowid, found in tokens.items():
        for token in sorted(set(found)):
            by_token.setdefault(token, ([], []))[0].append(rowid)
            by_token[token][1].append(found.count(token))
    loaded = Postings.load(np.array(list(docs)), {t: (np.array(r), np.array(n))
                                                  for t, (r, n) in by_token.items()})
    added = Postings()
    added.set(tokens.items())
    for query in ["cat", "cat face apple", "pizza"]:
        for got, want in zip(loaded.scores(query_tokens(query)),
                             added.scores(query_tokens(query)), strict=True):
            assert np.array_equal(got, want)


def test_best_keeps_ties_in_rowid_order_and_honours_allow() -> None:
    postings = Postings()
    postings.set([(7, ["cat"]), (3, ["cat"]), (5, ["cat"]), (9, ["dog"]), (1, ["cat", "cat"])])
    rowids, scores = postings.best(["cat"], 3)
    assert rowids.tolist() == [1, 3, 5] and scores[1] == scores[2] < scores[0]
    assert postings.best(["cat"], 10, allow=np.array([7, 9]))[0].tolist() == [7]
    assert postings.best(["cow"], 10)[0].tolist() == []
