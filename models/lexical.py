"""Words as SQLite FTS5 sees them: one tokenizer, one way to turn user text into a safe query,
and BM25 over a small in-memory table for evaluation. The item database (index.database) keeps
its lexical table with the same tokenizer and ranks it with the same `ranked`, so
what `xmr eval` measures is what the service ranks by.

Latin text: FTS5's `unicode61` tokenizer with `remove_diacritics 2` (`café` matches `cafe`)
behind the Porter stemmer (`cats` matches `cat`). Chinese, Japanese and Korean text has no
spaces: `unicode61` would make a whole sentence one token, so runs of those scripts are written
as overlapping character bigrams before they reach FTS5 (the classic CJK analyzer of full-text
engines: `北京大学` is `北京 京大 大学`); a run of one character stays itself.

User text is never FTS5's query language: each word becomes a quoted string and the words are
OR-ed, so quotes, `NEAR`, `*`, `^`, `:`, `AND`/`OR`/`NOT`, `-` and parentheses are only text.

Common words: BM25 costs time for every row a query word holds, and a word held by thousands of
rows (a category name every item of a large catalogue carries) cannot single items out. A word
held by more than COMMON rows therefore finds no row by itself: it adds its BM25 to the rows
the query's rarer words find (the scores of those rows stay exact), as Elasticsearch's
common-terms query did. A query of common words only finds nothing lexically; the learned
signals rank it. Below COMMON rows a table is ranked by plain BM25 over all the query's words.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence

import numpy as np

TOKENIZER = "porter unicode61 remove_diacritics 2"
MAX_QUERY_TERMS = 64  # a 10,000-character query is still one bounded FTS5 call
COMMON = 1000  # rows a word may hold and still find rows by itself (see above)
_CJK = (r"\u2e80-\u2fdf\u3005-\u3007\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31f0-\u31ff"
        r"\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f")
_CJK_RUN = re.compile(f"[{_CJK}]+")
_WORD = re.compile(r"[^\W_]+")


def _bigrams(match: re.Match[str]) -> str:
    run = match.group(0)
    if len(run) == 1:
        return f" {run} "
    return " " + " ".join(run[i:i + 2] for i in range(len(run) - 1)) + " "


def prepare(text: str) -> str:
    """Text as it is stored in, and matched against, the lexical table."""
    return _CJK_RUN.sub(_bigrams, text)


def document(words: str, labels: Sequence[str] = ()) -> str:
    """What an item's lexical row holds: its words (caption or text, and chosen metadata
    fields) and its labels, which are words the item carries too (a category named `fruit`)."""
    return prepare("\n".join([words, *labels]).strip())


def terms(text: str) -> list[str]:
    """The distinct words of user text, in order, at most MAX_QUERY_TERMS."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(prepare(text).lower()):
        seen.setdefault(word, None)
        if len(seen) == MAX_QUERY_TERMS:
            break
    return list(seen)


def match_expression(words: Sequence[str]) -> str:
    """A MATCH expression that finds rows holding any of `words` (`terms` of user text)."""
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words)


def ranked(db: sqlite3.Connection, table: str, text: str, k: int, among: str = "",
           args: Sequence[object] = ()) -> list[tuple[int, float]]:
    """The `k` rows of lexical `table` whose words best match `text`: (rowid, BM25) best
    first, higher is better; none when `text` has no word or only common ones. `among`/`args`:
    an SQL condition on `rowid` that filters them further."""
    words = terms(text)
    rare = [w for w in words if _rows_holding(db, table, w) <= COMMON]
    if not rare:
        return []
    select = f"SELECT rowid, -bm25({table}) AS score FROM {table} WHERE {table} MATCH ? {among}"
    if len(rare) == len(words):
        found = db.execute(f"{select} ORDER BY score DESC, rowid LIMIT ?",
                           (match_expression(words), *args, k))
        return [(int(row), float(score)) for row, score in found]
    # BM25 sums one term per query phrase. Matching `(rare) AND (all)` scores the rare words
    # twice and the common ones once; the rare words' own score, taken away, leaves the
    # exact score over all words, computed for the rows the rare words find and no others.
    twice = db.execute(f"{select} ORDER BY rowid", (
        f"({match_expression(rare)}) AND ({match_expression(words)})", *args)).fetchall()
    once = db.execute(f"{select} ORDER BY rowid", (match_expression(rare), *args)).fetchall()
    rows = np.array([row for row, _ in twice], dtype=np.int64)
    scores = np.array([score for _, score in twice]) - np.array([score for _, score in once])
    best = np.lexsort((rows, -scores))[:k]
    return list(zip(rows[best].tolist(), scores[best].tolist(), strict=True))


def _rows_holding(db: sqlite3.Connection, table: str, word: str) -> int:
    """How many rows hold `word`, counted up to COMMON + 1 (enough to tell)."""
    return int(db.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ?"
                          " LIMIT ?)", (match_expression([word]), COMMON + 1)).fetchone()[0])


def create_table(db: sqlite3.Connection, name: str) -> None:
    """A lexical table whose rowid is the item id and whose one column holds a `document`."""
    db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5(body, "
               f"tokenize = '{TOKENIZER}')")


def bm25_matrix(queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
    """(queries, documents) BM25 scores, higher is better, 0 where nothing matches: the lexical
    signal of an evaluation, over an in-memory table of `documents` (`document`s)."""
    db = sqlite3.connect(":memory:")
    try:
        create_table(db, "docs")
        db.executemany("INSERT INTO docs (rowid, body) VALUES (?, ?)",
                       [(row, text) for row, text in enumerate(documents)])
        scores = np.zeros((len(queries), len(documents)), dtype=np.float32)
        for row, query in enumerate(queries):
            for doc, score in ranked(db, "docs", query, len(documents)):
                scores[row, doc] = score
        return scores
    finally:
        db.close()
