"""The item database of one generation, in SQLite (WAL mode, synchronous=FULL): every item with
its key, labels, metadata and vector, and the journal of writes; the single source of truth.

Each item row also holds its float32 vector, so the FAISS index is a derived, rebuildable view:
an ingestion commits item + vector + a journal entry in one transaction and is acknowledged
only after that commit (WAL + synchronous=FULL makes a commit durable against a crash). FAISS
snapshots record the journal sequence they include; start-up replays the journal after it
(see index.catalog). Storing vectors costs 4*d bytes an item (1 KB at d=256), which is cheap
next to re-embedding: recovery needs no encoder and a rebuild of the same checkpoint no model.

Keys and content. An item with a user key is identified by its key, as a point by its id in
Qdrant or Weaviate: ingesting a key that exists replaces that item in place (same id, so no
client's reference goes stale; new content, labels, metadata and vector), and keyed items may
hold equal content (two products may share one photo). An item without a key is identified by
its content: when an item of equal (modality, content_hash) exists, keyed or not, its id is
returned and nothing changes. Keys and metadata are columns of the item row, so they share its
transaction, journal entry and crash-safety. Top-level scalar metadata fields are stored again
in `fields`, indexed like `labels`, so a metadata filter resolves to an id set as a label
filter does. Databases made before keys existed are migrated when opened (index.migrations).

The journal also lets the re-index job replay writes made to the live generation while it built
the next one, and `sealed` stops writes to a generation that has been swapped out.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from index import words as lexical
from index.migrations import migrate_keys
from index.payload import dump_metadata, filterable
from index.records import NewItem, Record
from models.bm25 import Postings

DATABASE = "meta.sqlite"
ITEMS = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    modality TEXT NOT NULL CHECK (modality IN ('image', 'text')),
    content_hash TEXT NOT NULL,
    source TEXT,
    text TEXT,
    labels TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    key TEXT,
    metadata TEXT NOT NULL DEFAULT '{{}}'
)"""
SCHEMA = ITEMS.format(name="items") + """;
CREATE UNIQUE INDEX IF NOT EXISTS items_by_key ON items (key) WHERE key IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS unkeyed_by_content ON items (modality, content_hash)
    WHERE key IS NULL;
CREATE INDEX IF NOT EXISTS items_by_content ON items (modality, content_hash);
CREATE TABLE IF NOT EXISTS labels (
    item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    level INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (item_id, level)
);
CREATE INDEX IF NOT EXISTS labels_by_value ON labels (level, value);
CREATE TABLE IF NOT EXISTS fields (
    item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,  -- index.payload.canonical(value)
    PRIMARY KEY (item_id, name)
);
CREATE INDEX IF NOT EXISTS fields_by_value ON fields (name, value);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('add', 'del')),
    item_id INTEGER NOT NULL,
    modality TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + lexical.CAPTIONS + ";"
# The vector spaces a generation keeps a store of: each modality's own vectors, and the
# caption vectors of images (index.words), each as (table, id column, condition).
SPACES = {"image": ("items", "id", "modality = 'image'"),
          "text": ("items", "id", "modality = 'text'"),
          "caption": ("captions", "item_id", "1")}
CHUNK = 500  # SQLite caps the parameters of one statement


class Sealed(RuntimeError):
    """The generation was swapped out by a re-index; write to the one CURRENT names."""


class ItemDatabase:
    """One generation's database. Not thread-safe by itself: the catalog serialises access."""

    def __init__(self, path: Path, text_fields: Sequence[str] | None = None) -> None:
        """`text_fields`: the metadata fields whose words the lexical table holds beside each
        item's text (index.words); None keeps those the database was built with."""
        self.path = path
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        migrate_keys(self.db, ITEMS, SCHEMA)  # before foreign keys: it drops and renames a table
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        if text_fields is None:
            text_fields = lexical.fields_built(self.db)
        self.text_fields = tuple(text_fields)
        lexical.ensure(self.db, self.text_fields)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self, allow_sealed: bool = False) -> Iterator[sqlite3.Connection]:
        """One durable write transaction (BEGIN IMMEDIATE takes the write lock across
        processes, so the re-index job's final catch-up and seal exclude other writers)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if not allow_sealed and self._state("sealed") is not None:
                raise Sealed(f"{self.path.parent.name} was replaced by {self._state('sealed')}")
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several reads (WAL readers do not block the writer)."""
        self.db.execute("BEGIN")
        try:
            yield self.db
        finally:
            self.db.execute("COMMIT")

    # -- writes (call inside write()) ---------------------------------------------------------
    def insert(self, items: Sequence[NewItem], vectors: np.ndarray, checkpoint_id: str,
               ids: Sequence[int] | None = None,
               captions: Sequence[np.ndarray | None] | None = None) -> list[tuple[int, bool]]:
        """(id, created) per item, in order. A key that exists: that item is replaced, same id,
        (id, False). No key and equal content exists: (its id, False), nothing changes.
        `ids` forces the ids (the re-index job, which has matched keys and contents itself:
        items without a key are then not merged by content). `captions`: per item, the
        caption vector of an image with words (index.words), or None."""
        out: list[tuple[int, bool]] = []
        for row, item in enumerate(items):
            vector = _blob(vectors[row])
            given = None if captions is None else captions[row]
            caption = None if given is None else _blob(given)
            forced = None if ids is None else int(ids[row])
            found = self.id_of_key(item.key) if item.key is not None else None
            if item.key is None and forced is None:
                found = self.id_of(item.modality, item.content_hash)
            if found is None or forced not in (None, found):
                out.append((self._add(forced, item, checkpoint_id, vector), True))
                lexical.set_caption(self.db, out[-1][0], caption)
            elif item.key is None:
                out.append((found, False))
            else:
                self.replace(found, item, checkpoint_id, vector, caption)
                out.append((found, False))
        return out

    def _add(self, item_id: int | None, item: NewItem, checkpoint_id: str, vector: bytes) -> int:
        cursor = self.db.execute(
            "INSERT INTO items (id, modality, content_hash, source, text, labels, checkpoint_id,"
            " vector, key, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (item_id, item.modality, item.content_hash, item.source, item.text,
             _labels(item), checkpoint_id, vector, item.key, dump_metadata(item.metadata)))
        item_id = int(cursor.lastrowid or 0)
        self._index_payload(item_id, item)
        self._journal("add", item_id, item.modality)
        return item_id

    def replace(self, item_id: int, item: NewItem, checkpoint_id: str,
                vector: bytes | None = None, caption: bytes | None = None) -> None:
        """Overwrite an item in place (None: keep its vector, the content being the same;
        its caption vector is `caption`)."""
        old = self.db.execute("SELECT modality FROM items WHERE id = ?", (item_id,)).fetchone()
        self.db.execute(
            "UPDATE items SET modality = ?, content_hash = ?, source = ?, text = ?, labels = ?,"
            " checkpoint_id = ?, vector = coalesce(?, vector), key = ?, metadata = ?"
            " WHERE id = ?",
            (item.modality, item.content_hash, item.source, item.text, _labels(item),
             checkpoint_id, vector, item.key, dump_metadata(item.metadata), item_id))
        self.db.execute("DELETE FROM labels WHERE item_id = ?", (item_id,))
        self.db.execute("DELETE FROM fields WHERE item_id = ?", (item_id,))
        self._index_payload(item_id, item)
        lexical.set_caption(self.db, item_id, caption)
        if old[0] != item.modality:  # its vector leaves the other modality's store
            self._journal("del", item_id, old[0])
        self._journal("add", item_id, item.modality)

    def _index_payload(self, item_id: int, item: NewItem) -> None:
        """The rows that find an item by its labels, fields and words."""
        self.db.executemany("INSERT INTO labels VALUES (?, ?, ?)",
                            [(item_id, level, v) for level, v in enumerate(item.labels)])
        self.db.executemany("INSERT INTO fields VALUES (?, ?, ?)",
                            [(item_id, name, v) for name, v in filterable(item.metadata)])
        lexical.write(self.db, item_id, item.modality,
                      lexical.words_of(item.text, item.metadata, self.text_fields), item.labels)

    def _journal(self, op: str, item_id: int, modality: str) -> None:
        self.db.execute("INSERT INTO journal (op, item_id, modality) VALUES (?, ?, ?)",
                        (op, item_id, modality))

    def delete(self, item_id: int) -> str | None:
        """Delete one item; returns its modality, or None when there was none."""
        found = self.db.execute("SELECT modality FROM items WHERE id = ?", (item_id,)).fetchone()
        if found is None:
            return None
        self.db.execute("DELETE FROM items WHERE id = ?", (item_id,))
        lexical.delete(self.db, item_id)
        self._journal("del", item_id, str(found[0]))
        return str(found[0])

    def caption_from_pairs(self) -> int:
        return lexical.caption_from_pairs(self.db, self.text_fields)

    def set_captions(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        for item_id, row in zip(ids, vectors, strict=True):
            lexical.set_caption(self.db, int(item_id), _blob(row))

    def seal(self, successor: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO state VALUES ('sealed', ?)", (successor,))

    def reserve_ids(self, n: int) -> int:
        """Reserve n ids no writer of this database will hand out; returns the first."""
        self.db.execute("INSERT OR IGNORE INTO sqlite_sequence (name, seq) VALUES ('items', 0)")
        first = int(self.db.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'items'").fetchone()[0]) + 1
        self.db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'items'", (first + n - 1,))
        return first

    def next_id(self) -> int:
        """The id the next insert or reservation of this database would get."""
        seq = self.db.execute("SELECT max(seq) FROM sqlite_sequence WHERE name = 'items'")
        return int(seq.fetchone()[0] or 0) + 1

    def set_next_id(self, at_least: int) -> None:
        """Make the next automatic id at least `at_least` (ids are never reused)."""
        self.db.execute("INSERT OR IGNORE INTO sqlite_sequence (name, seq) VALUES ('items', 0)")
        self.db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'items'",
                        (at_least - 1,))

    # -- reads --------------------------------------------------------------------------------
    def _state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def sealed(self) -> str | None:
        return self._state("sealed")

    def high_water(self) -> int:
        row = self.db.execute("SELECT max(seq) FROM journal").fetchone()
        return int(row[0] or 0)

    def journal_since(self, seq: int) -> list[tuple[int, str, int, str]]:
        return [(int(s), str(op), int(i), str(m)) for s, op, i, m in self.db.execute(
            "SELECT seq, op, item_id, modality FROM journal WHERE seq > ? ORDER BY seq", (seq,))]

    def get(self, item_id: int) -> Record | None:
        found = self.get_many([item_id])
        return found.get(item_id)

    def get_many(self, ids: Sequence[int]) -> dict[int, Record]:
        out: dict[int, Record] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                "SELECT id, modality, labels, text, source, content_hash, checkpoint_id, key,"
                f" metadata FROM items WHERE id IN ({marks})", chunk):
                out[int(row[0])] = Record(int(row[0]), row[1], tuple(json.loads(row[2])),
                                          row[3], row[4], row[5], row[6], row[7],
                                          json.loads(row[8]))
        return out

    def id_of(self, modality: str, content_hash: str, unkeyed: bool = False) -> int | None:
        """The (first) item of this content; `unkeyed`: among items without a key only."""
        row = self.db.execute(
            "SELECT min(id) FROM items WHERE modality = ? AND content_hash = ?"
            + (" AND key IS NULL" if unkeyed else ""), (modality, content_hash)).fetchone()
        return None if row[0] is None else int(row[0])

    def id_of_key(self, key: str) -> int | None:
        row = self.db.execute("SELECT id FROM items WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def vectors(self, ids: Sequence[int], dim: int,
                space: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids found among the vectors of `space` (SPACES), their vectors), in id order."""
        table, column, condition = SPACES[space]
        found_ids: list[int] = []
        blobs: list[bytes] = []
        ids = sorted(int(i) for i in ids)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            marks = ",".join("?" * len(chunk))
            for item_id, blob in self.db.execute(
                    f"SELECT {column}, vector FROM {table} WHERE {condition} AND"
                    f" {column} IN ({marks}) ORDER BY {column}", chunk):
                found_ids.append(int(item_id))
                blobs.append(blob)
        return _stack(found_ids, blobs, dim)

    def all_vectors(self, space: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        table, column, condition = SPACES[space]
        rows = self.db.execute(f"SELECT {column}, vector FROM {table} WHERE {condition}"
                               f" ORDER BY {column}").fetchall()
        return _stack([int(r[0]) for r in rows], [r[1] for r in rows], dim)

    def all_items(self) -> list[Record]:
        ids = [int(r[0]) for r in self.db.execute("SELECT id FROM items ORDER BY id")]
        found = self.get_many(ids)
        return [found[i] for i in ids]

    def count(self, space: str | None = None) -> int:
        """Items (of a modality), or vectors of a space (SPACES)."""
        if space is None:
            return int(self.db.execute("SELECT count(*) FROM items").fetchone()[0])
        if space not in SPACES:
            raise ValueError(f"space must be one of {tuple(SPACES)}, got {space!r}")
        table, _, condition = SPACES[space]
        return int(self.db.execute(
            f"SELECT count(*) FROM {table} WHERE {condition}").fetchone()[0])

    def label_values(self) -> dict[int, set[str]]:
        """Per level index, the label values stored items carry."""
        found: dict[int, set[str]] = {}
        for level, value in self.db.execute("SELECT DISTINCT level, value FROM labels"):
            found.setdefault(int(level), set()).add(str(value))
        return found

    def ids_matching(self, modality: str, labels: Mapping[int, str],
                     where: Mapping[str, str]) -> np.ndarray:
        """Ids of `modality` whose label at each level index equals the wanted value and whose
        metadata field each `where` name has the canonical value (index.payload)."""
        among, args = _filters(labels, where)
        return np.array([r[0] for r in self.db.execute(
            f"SELECT id FROM items WHERE modality = ? {among}", [modality, *args])],
            dtype=np.int64)

    def lexicon(self, modality: str) -> Postings:
        """BM25's view of the words of `modality`'s items (index.words)."""
        return lexical.postings(self.db, modality)

    def refresh_lexicon(self, postings: Postings, modality: str, ids: Iterable[int]) -> None:
        lexical.refresh(self.db, postings, modality, ids)

    def uncaptioned(self) -> list[tuple[int, str]]:
        """(id, words) of the images with words and no caption vector (index.words)."""
        return lexical.uncaptioned(self.db, self.text_fields)

    def has_words(self, modality: str) -> bool:
        return lexical.has_words(self.db, modality)


def _filters(labels: Mapping[int, str], where: Mapping[str, str]) -> tuple[str, list[object]]:
    """An SQL condition on `items.id` (and its arguments) for label and metadata filters."""
    sql = ""
    args: list[object] = []
    for level, value in labels.items():
        sql += " AND items.id IN (SELECT item_id FROM labels WHERE level = ? AND value = ?)"
        args += [level, value]
    for name, canonical in where.items():
        sql += " AND items.id IN (SELECT item_id FROM fields WHERE name = ? AND value = ?)"
        args += [name, canonical]
    return sql, args


def _labels(item: NewItem) -> str:
    return json.dumps(list(item.labels), ensure_ascii=False)


def _blob(row: np.ndarray) -> bytes:
    return np.ascontiguousarray(row, np.float32).tobytes()


def _stack(ids: list[int], blobs: list[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
    if not blobs:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)
    return np.array(ids, dtype=np.int64), vectors.copy()
