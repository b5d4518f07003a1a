"""Item metadata in SQLite (WAL mode, synchronous=FULL): the single source of truth.

Each item row also holds its float32 vector, so the FAISS index is a derived, rebuildable view:
an ingestion commits item + vector + a journal entry in one transaction and is acknowledged
only after that commit (WAL + synchronous=FULL makes a commit durable against a crash). FAISS
snapshots record the journal sequence they include; start-up replays the journal after it
(see index.catalog). Storing vectors costs 4*d bytes an item (1 KB at d=256), which is cheap
next to re-embedding: recovery needs no encoder and a rebuild of the same checkpoint no model.

The journal also lets the re-index job replay writes made to the live generation while it built
the next one, and `sealed` stops writes to a generation that has been swapped out.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from index.records import NewItem, Record, check_modality

DATABASE = "meta.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    modality TEXT NOT NULL CHECK (modality IN ('image', 'text')),
    content_hash TEXT NOT NULL,
    source TEXT,
    text TEXT,
    labels TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (modality, content_hash)
);
CREATE TABLE IF NOT EXISTS labels (
    item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    level INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (item_id, level)
);
CREATE INDEX IF NOT EXISTS labels_by_value ON labels (level, value);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('add', 'del')),
    item_id INTEGER NOT NULL,
    modality TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
CHUNK = 500  # SQLite caps the parameters of one statement


class Sealed(RuntimeError):
    """The generation was swapped out by a re-index; write to the one CURRENT names."""


class Metadata:
    """One generation's database. Not thread-safe by itself: the catalog serialises access."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)

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
               ids: Sequence[int] | None = None) -> list[tuple[int, bool]]:
        """(id, created) per item; the same (modality, content_hash) gives the existing id.
        `ids` forces ids (the re-index job keeps them stable across generations)."""
        out: list[tuple[int, bool]] = []
        for row, item in enumerate(items):
            found = self.db.execute(
                "SELECT id FROM items WHERE modality = ? AND content_hash = ?",
                (item.modality, item.content_hash)).fetchone()
            if found is not None:
                out.append((int(found[0]), False))
                continue
            cursor = self.db.execute(
                "INSERT INTO items (id, modality, content_hash, source, text, labels,"
                " checkpoint_id, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (None if ids is None else int(ids[row]), item.modality, item.content_hash,
                 item.source, item.text, json.dumps(list(item.labels), ensure_ascii=False),
                 checkpoint_id, np.ascontiguousarray(vectors[row], np.float32).tobytes()))
            item_id = int(cursor.lastrowid or 0)
            self.db.executemany("INSERT INTO labels VALUES (?, ?, ?)",
                                [(item_id, level, v) for level, v in enumerate(item.labels)])
            self.db.execute("INSERT INTO journal (op, item_id, modality) VALUES ('add', ?, ?)",
                            (item_id, item.modality))
            out.append((item_id, True))
        return out

    def delete(self, item_id: int) -> str | None:
        """Delete one item; returns its modality, or None when there was none."""
        found = self.db.execute("SELECT modality FROM items WHERE id = ?", (item_id,)).fetchone()
        if found is None:
            return None
        self.db.execute("DELETE FROM items WHERE id = ?", (item_id,))
        self.db.execute("INSERT INTO journal (op, item_id, modality) VALUES ('del', ?, ?)",
                        (item_id, found[0]))
        return str(found[0])

    def seal(self, successor: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO state VALUES ('sealed', ?)", (successor,))

    def reserve_ids(self, n: int) -> int:
        """Reserve n ids no writer of this database will hand out; returns the first."""
        self.db.execute("INSERT OR IGNORE INTO sqlite_sequence (name, seq) VALUES ('items', 0)")
        first = int(self.db.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'items'").fetchone()[0]) + 1
        self.db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'items'", (first + n - 1,))
        return first

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
                "SELECT id, modality, labels, text, source, content_hash, checkpoint_id"
                f" FROM items WHERE id IN ({marks})", chunk):
                out[int(row[0])] = Record(int(row[0]), row[1], tuple(json.loads(row[2])),
                                          row[3], row[4], row[5], row[6])
        return out

    def id_of(self, modality: str, content_hash: str) -> int | None:
        row = self.db.execute("SELECT id FROM items WHERE modality = ? AND content_hash = ?",
                              (modality, content_hash)).fetchone()
        return None if row is None else int(row[0])

    def vectors(self, ids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, vectors) for the given ids, in id order."""
        found_ids: list[int] = []
        blobs: list[bytes] = []
        ids = sorted(int(i) for i in ids)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            marks = ",".join("?" * len(chunk))
            for item_id, blob in self.db.execute(
                    f"SELECT id, vector FROM items WHERE id IN ({marks}) ORDER BY id", chunk):
                found_ids.append(int(item_id))
                blobs.append(blob)
        return _stack(found_ids, blobs, dim)

    def all_vectors(self, modality: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.db.execute(
            "SELECT id, vector FROM items WHERE modality = ? ORDER BY id", (modality,)).fetchall()
        return _stack([int(r[0]) for r in rows], [r[1] for r in rows], dim)

    def all_items(self) -> list[Record]:
        ids = [int(r[0]) for r in self.db.execute("SELECT id FROM items ORDER BY id")]
        found = self.get_many(ids)
        return [found[i] for i in ids]

    def count(self, modality: str | None = None) -> int:
        if modality is None:
            return int(self.db.execute("SELECT count(*) FROM items").fetchone()[0])
        check_modality(modality)
        return int(self.db.execute(
            "SELECT count(*) FROM items WHERE modality = ?", (modality,)).fetchone()[0])

    def ids_with_labels(self, modality: str, wanted: Mapping[int, str]) -> np.ndarray:
        """Ids of `modality` whose label at each level index equals the wanted value."""
        sql = "SELECT id FROM items WHERE modality = ?"
        args: list[object] = [modality]
        for level, value in wanted.items():
            sql += " AND id IN (SELECT item_id FROM labels WHERE level = ? AND value = ?)"
            args += [level, value]
        return np.array([r[0] for r in self.db.execute(sql, args)], dtype=np.int64)


def _stack(ids: list[int], blobs: list[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
    if not blobs:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)
    return np.array(ids, dtype=np.int64), vectors.copy()
