"""Words as SQLite FTS5 sees them: one tokenizer, one way to turn user text into a safe query,
and BM25 over a small in-memory table for evaluation. The item database (index.database) keeps
its lexical table with the same tokenizer and queries it with the same `match_expression`, so
what `xmr eval` measures is what the service ranks by.

Latin text: FTS5's `unicode61` tokenizer with `remove_diacritics 2` (`café` matches `cafe`)
behind the Porter stemmer (`cats` matches `cat`). Chinese, Japanese and Korean text has no
spaces: `unicode61` would make a whole sentence one token, so runs of those scripts are written
as overlapping character bigrams before they reach FTS5 (the classic CJK analyzer of full-text
engines: `北京大学` is `北京 京大 大学`); a run of one character stays itself.

User text is never FTS5's query language: each word becomes a quoted string and the words are
OR-ed, so quotes, `NEAR`, `*`, `^`, `:`, `AND`/`OR`/`NOT`, `-` and parentheses are only text.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence

import numpy as np

TOKENIZER = "porter unicode61 remove_diacritics 2"
MAX_QUERY_TERMS = 64  # a 10,000-character query is still one bounded FTS5 call
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


def match_expression(text: str) -> str | None:
    """A MATCH expression that finds rows holding any word of `text` (None: no word at all,
    as for only punctuation or only emoji)."""
    words = terms(text)
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words) or None


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
            expression = match_expression(query)
            if expression is None:
                continue
            for doc, score in db.execute(
                    "SELECT rowid, bm25(docs) FROM docs WHERE docs MATCH ?", (expression,)):
                scores[row, int(doc)] = -float(score)  # FTS5's bm25 is lower-is-better
        return scores
    finally:
        db.close()
