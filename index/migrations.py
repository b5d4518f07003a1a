"""Databases made by older releases brought to index.database's schema when opened, once, in
one transaction each. (The lexical table and caption vectors of hybrid search are built by
index.words.ensure, which also runs on open.)"""

from __future__ import annotations

import sqlite3

# The items table's columns before keys existed.
OLD_COLUMNS = "id, modality, content_hash, source, text, labels, checkpoint_id, vector"


def migrate_keys(db: sqlite3.Connection, items: str, schema: str) -> None:
    """Bring a database made before keys existed to SCHEMA, once, in one transaction: the
    items table is rebuilt (SQLite cannot drop its old UNIQUE (modality, content_hash), which
    now holds only for items without a key) with ids, vectors and the id sequence kept;
    `items` and `schema` are index.database's current ITEMS and SCHEMA."""
    if not _needs_migration(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if _needs_migration(db):  # another process may have migrated while we waited
            seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'items'").fetchone()
            db.execute(items.format(name="items_migrated"))
            db.execute(f"INSERT INTO items_migrated ({OLD_COLUMNS}) SELECT {OLD_COLUMNS}"
                       " FROM items")
            db.execute("DROP TABLE items")
            db.execute("ALTER TABLE items_migrated RENAME TO items")
            db.execute("DELETE FROM sqlite_sequence WHERE name IN ('items', 'items_migrated')")
            if seq is not None:  # ids reserved by a re-index job stay reserved
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('items', ?)", seq)
            for statement in schema.split(";"):  # executescript would commit first
                db.execute(statement)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _needs_migration(db: sqlite3.Connection) -> bool:
    columns = {row[1] for row in db.execute("PRAGMA table_info(items)")}
    return bool(columns) and "key" not in columns
