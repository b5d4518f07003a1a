"""Words as SQLite FTS5 sees them: one tokenizer, the tokens of a document or of user text,
and BM25 over them (models.bm25). The item database (index.words) keeps each item's words in an
FTS5 table with this tokenizer and ranks them with the same models.bm25, so what `xmr eval`
measures is what the service ranks by.

Latin text: FTS5's `unicode61` tokenizer with `remove_diacritics 2` (`café` matches `cafe`)
behind the Porter stemmer (`cats` matches `cat`). Chinese, Japanese and Korean text has no
spaces: `unicode61` would make a whole sentence one token, so runs of those scripts are written
as overlapping character bigrams before they reach FTS5 (the classic CJK analyzer of full-text
engines: `北京大学` is `北京 京大 大学`); a run of one character stays itself.

User text is never FTS5's query language: it is cut into words (letters and digits), and each
word is tokenized as a document would be, so quotes, `NEAR`, `*`, `^`, `:`, `AND`/`OR`/`NOT`,
`-` and parentheses are only text. Tokens come from FTS5 itself (its `fts5vocab` view of a
scratch in-memory table), so a query word and a stored word always agree.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from models.bm25 import Postings

TOKENIZER = "porter unicode61 remove_diacritics 2"
MAX_QUERY_TERMS = 64  # a 10,000-character query is still a bounded amount of work
_CJK = (r"\u2e80-\u2fdf\u3005-\u3007\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31f0-\u31ff"
        r"\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f")
_CJK_RUN = re.compile(f"[{_CJK}]+")
_WORD = re.compile(r"[^\W_]+")
_WORD_TOKENS: dict[str, tuple[str, ...]] = {}  # a query word's tokens, by word
_SCRATCH = threading.local()  # per thread: an in-memory lexical table that tokenizes


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


def query_tokens(text: str) -> list[str]:
    """The tokens BM25 matches user text by: each word's, in order (models.bm25)."""
    words = terms(text)
    missing = [word for word in words if word not in _WORD_TOKENS]
    if missing:
        if len(_WORD_TOKENS) > 65536:  # words people type repeat: a bounded memo suffices
            _WORD_TOKENS.clear()
        _WORD_TOKENS.update(zip(missing, map(tuple, tokenize(missing)), strict=True))
    return [token for word in words for token in _WORD_TOKENS[word]]


def tokenize(bodies: Sequence[str]) -> list[list[str]]:
    """Each text's tokens as a lexical table stores them (order not kept), read back from a
    scratch table of this thread's."""
    db = getattr(_SCRATCH, "db", None)
    if db is None:
        db = _SCRATCH.db = sqlite3.connect(":memory:", isolation_level=None)
        create_table(db, "scratch")
        db.execute("CREATE VIRTUAL TABLE tokens USING fts5vocab(scratch, instance)")
    found: dict[int, list[str]] = defaultdict(list)
    db.execute("BEGIN")
    try:
        db.executemany("INSERT INTO scratch (rowid, body) VALUES (?, ?)", enumerate(bodies))
        for row, token in db.execute("SELECT doc, term FROM tokens"):
            found[row].append(token)
    finally:
        db.execute("ROLLBACK")  # the scratch table is empty again
    return [found.get(row, []) for row in range(len(bodies))]


def create_table(db: sqlite3.Connection, name: str) -> None:
    """A lexical table whose rowid is the item id and whose one column holds a `document`."""
    db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5(body, "
               f"tokenize = '{TOKENIZER}')")


def bm25_matrix(queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
    """(queries, documents) BM25 scores, higher is better, 0 where nothing matches: the lexical
    signal of an evaluation, over `documents` (`document`s) as an index ranks its rows."""
    postings = Postings()
    postings.set(enumerate(tokenize(documents)))
    scores = np.zeros((len(queries), len(documents)), dtype=np.float32)
    for row, query in enumerate(queries):
        found, score = postings.scores(query_tokens(query))
        scores[row, found] = score
    return scores
