"""Backbone features computed once per (backbone, item content) and kept on disk.

Keyed by a hash of the content (image bytes, text), not by item id or row position, so a
renamed file or a second corpus holding the same image reuses the entry, and an edited image
gets a new one. One SQLite file per backbone: reads of thousands of entries are one query,
writes are atomic, and concurrent readers (trainer, indexer) are safe.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

Arrays = dict[str, np.ndarray]

SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    key TEXT NOT NULL, name TEXT NOT NULL, npy BLOB NOT NULL, PRIMARY KEY (key, name)
)
"""
# SQLite caps the number of parameters of one statement.
QUERY_CHUNK = 500


def content_key(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class FeatureCache:
    """Per-backbone store of named arrays; `FeatureCache(None)` caches nothing."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def _connect(self, backbone_id: str) -> sqlite3.Connection | None:
        if self.root is None:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.root / f"{backbone_id}.sqlite", timeout=60)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(SCHEMA)
        return db

    def get_many(self, backbone_id: str, keys: Sequence[str]) -> dict[str, Arrays]:
        db = self._connect(backbone_id)
        if db is None:
            return {}
        found: dict[str, Arrays] = {}
        with db:
            for start in range(0, len(keys), QUERY_CHUNK):
                chunk = list(keys[start : start + QUERY_CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT key, name, npy FROM features WHERE key IN ({marks})", chunk
                )
                for key, name, blob in rows:
                    found.setdefault(key, {})[name] = np.load(io.BytesIO(blob))
        db.close()
        return found

    def known(self, backbone_id: str, keys: Sequence[str]) -> set[str]:
        """Which of `keys` have features, without reading them."""
        db = self._connect(backbone_id)
        if db is None:
            return set()
        known: set[str] = set()
        with db:
            for start in range(0, len(keys), QUERY_CHUNK):
                chunk = list(keys[start : start + QUERY_CHUNK])
                marks = ",".join("?" * len(chunk))
                query = f"SELECT DISTINCT key FROM features WHERE key IN ({marks})"
                known.update(key for (key,) in db.execute(query, chunk))
        db.close()
        return known

    def put_many(self, backbone_id: str, entries: Iterable[tuple[str, Arrays]]) -> None:
        db = self._connect(backbone_id)
        if db is None:
            return
        rows = [
            (key, name, _to_npy(array)) for key, arrays in entries for name, array in arrays.items()
        ]
        with db:
            db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?)", rows)
        db.close()


def _to_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()
