"""An item's words in the item database: what hybrid search (models.fusion) matches a text
query against besides the item's own vector.

- The lexical tables, one per modality: each item's words (its text, or an image's caption,
  and the metadata fields the index was told to use) in SQLite FTS5, rowid = item id,
  tokenized as models.lexical says. A search reads its modality's table alone, with no join to
  the items (a join lets SQLite's planner walk every item of the modality).
- The caption vectors: an image's words embedded by the text encoder, in the shared space
  (`captions`, one row per image that has words); the catalog keeps a vector store of them.

Both are written by the same statements, in the same transaction, as the item row
(index.database), so an ingest, an upsert, a delete, a generation swap or a crash never leaves
the words of an item apart from the item. `ensure` builds the lexical tables from the stored
items when they are missing or were built with other fields, and gives each captioned image
without a caption vector the vector of the text item of the same words, where there is one
(a pair's text): databases made before hybrid search migrate on open, vectors and journal kept.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from index.records import MODALITIES, NewItem, text_hash
from models.bm25 import Postings
from models.lexical import create_table, document, tokenize

TABLES = {modality: f"words_{modality}" for modality in MODALITIES}
_RETIRED = ("words",)  # the one table of both modalities, from before VERSION 2
CAPTIONS = """CREATE TABLE IF NOT EXISTS captions (
    item_id INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
    vector BLOB NOT NULL
)"""
VERSION = 2  # bump when what goes into a row changes: every table is then rebuilt on open
_STATE = "lexical"


def words_of(text: str | None, metadata: Mapping[str, Any], fields: Sequence[str]) -> str:
    """The searchable words of an item: its text, then each named metadata field holding a
    string (or a list of strings)."""
    parts = [text] if text else []
    for name in fields:
        value = metadata.get(name)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(v for v in value if isinstance(v, str))
    return "\n".join(parts)


def captions_of(items: Sequence[NewItem], fields: Sequence[str]) -> list[str]:
    """Per item, the words its caption vector embeds: an image's words, "" for a text item
    (its own vector is its text's) or an image without words."""
    return [words_of(i.text, i.metadata, fields) if i.modality == "image" else "" for i in items]


def write(db: sqlite3.Connection, item_id: int, modality: str, words: str,
          labels: Sequence[str]) -> None:
    """Set an item's lexical row: its words and labels (inside the item's write transaction)."""
    delete(db, item_id)  # from every table: an upsert may change the item's modality
    body = document(words, labels)
    if body:
        db.execute(f"INSERT INTO {TABLES[modality]} (rowid, body) VALUES (?, ?)", (item_id, body))


def delete(db: sqlite3.Connection, item_id: int) -> None:
    for table in TABLES.values():
        db.execute(f"DELETE FROM {table} WHERE rowid = ?", (item_id,))


def ensure(db: sqlite3.Connection, fields: Sequence[str]) -> None:
    """Create the table, or rebuild it from the items, unless it is already built for these
    fields; in one transaction, safe against another process doing the same."""
    wanted = json.dumps({"version": VERSION, "fields": list(fields)})
    if _built_for(db) == wanted:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if _built_for(db) != wanted:  # another process may have built it while we waited
            for table in (*_RETIRED, *TABLES.values()):
                db.execute(f"DROP TABLE IF EXISTS {table}")
            for table in TABLES.values():
                create_table(db, table)
            for item_id, modality, text, metadata, labels in db.execute(
                    "SELECT id, modality, text, metadata, labels FROM items").fetchall():
                write(db, int(item_id), modality, words_of(text, json.loads(metadata), fields),
                      json.loads(labels))
            caption_from_pairs(db, fields)
            db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (_STATE, wanted))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def set_caption(db: sqlite3.Connection, item_id: int, vector: bytes | None) -> None:
    """Set (None: clear) an image's caption vector (inside the item's write transaction)."""
    db.execute("DELETE FROM captions WHERE item_id = ?", (item_id,))
    if vector is not None:
        db.execute("INSERT INTO captions VALUES (?, ?)", (item_id, vector))


def uncaptioned(db: sqlite3.Connection, fields: Sequence[str]) -> list[tuple[int, str]]:
    """(id, words) of the images that have words but no caption vector."""
    rows = db.execute("SELECT id, text, metadata FROM items WHERE modality = 'image' AND"
                      " id NOT IN (SELECT item_id FROM captions)").fetchall()
    return [(item_id, words) for item_id, words in _words(rows, fields) if words.strip()]


def caption_from_pairs(db: sqlite3.Connection, fields: Sequence[str]) -> int:
    """Images with words but no caption vector take the vector of a text item whose text is
    those words (a pair's text: no encoding needed). Returns how many did."""
    done = 0
    for item_id, words in uncaptioned(db, fields):
        found = db.execute("SELECT vector FROM items WHERE modality = 'text' AND"
                           " content_hash = ? LIMIT 1", (text_hash(words),)).fetchone()
        if found is not None:
            db.execute("INSERT INTO captions VALUES (?, ?)", (item_id, found[0]))
            done += 1
    return done


def fields_built(db: sqlite3.Connection) -> tuple[str, ...]:
    """The metadata fields the table was built with (none for a table not built yet)."""
    found = _built_for(db)
    return () if found is None else tuple(json.loads(found)["fields"])


def _built_for(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT value FROM state WHERE key = ?", (_STATE,)).fetchone()
    return None if row is None else str(row[0])


def _words(rows: Iterable[tuple[int, str | None, str]],
           fields: Sequence[str]) -> Iterable[tuple[int, str]]:
    for item_id, text, metadata in rows:
        yield int(item_id), words_of(text, json.loads(metadata), fields)


def postings(db: sqlite3.Connection, modality: str) -> Postings:
    """BM25's view (models.bm25) of `modality`'s lexical table as it is now: every row, and
    each token's rows with how often each holds it, read from FTS5's own `fts5vocab` view."""
    table = TABLES[modality]
    db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{table}_tokens USING "
               f"fts5vocab(main, {table}, instance)")
    by_token = {}
    for token, holding in db.execute(
            f"SELECT term, group_concat(doc) FROM temp.{table}_tokens GROUP BY term"):
        rowids, tf = np.unique(np.array(holding.split(","), np.int64), return_counts=True)
        by_token[token] = (rowids, tf)
    rowids = np.array([row for row, in db.execute(f"SELECT rowid FROM {table}")], np.int64)
    return Postings.load(rowids, by_token)


def refresh(db: sqlite3.Connection, postings: Postings, modality: str,
            ids: Iterable[int]) -> None:
    """Bring `postings` of `modality` up to date for these items (written, changed or gone)."""
    ids = sorted(set(ids))
    postings.remove(ids)
    for start in range(0, len(ids), 500):  # SQLite caps the parameters of one statement
        chunk = ids[start:start + 500]
        rows = db.execute(f"SELECT rowid, body FROM {TABLES[modality]} WHERE rowid IN "
                          f"({','.join('?' * len(chunk))})", chunk).fetchall()
        postings.set(zip([row for row, _ in rows], tokenize([body for _, body in rows]),
                         strict=True))


def ids(db: sqlite3.Connection) -> set[int]:
    """The ids of the items that have a lexical row."""
    return {int(row[0]) for table in TABLES.values()
            for row in db.execute(f"SELECT rowid FROM {table}")}


def has_words(db: sqlite3.Connection, modality: str) -> bool:
    return db.execute(f"SELECT 1 FROM {TABLES[modality]} LIMIT 1").fetchone() is not None
