"""How the re-index job matches the items it plans (a corpus) to the live generation's, so
that ids survive a rebuild and nothing is indexed twice.

Two items are one when they have the same key, or, both without a key, the same content
(index.database). A planned item keeps the live id of its key; one of an index made before
keys existed keeps the id of the unkeyed live item of equal content. For the rows it names the
corpus decides content, caption and labels; metadata, which a corpus row cannot carry, stays
as the live item has it (set through the service).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from index.records import NewItem, Record

Identity = tuple[str, ...]  # ("key", key) or ("content", modality, content_hash)


def identity(item: NewItem | Record) -> Identity:
    """What makes two items one (index.database): the key, else the content."""
    return ("key", item.key) if item.key is not None else (
        "content", item.modality, item.content_hash)


def match_live(items: dict[Identity, NewItem],
               records: Sequence[Record]) -> dict[Identity, int]:
    """The live id each planned item keeps: the item of its key, else (for an index made
    before keys) an item without a key of equal content; ids only go to one item."""
    by_identity = {identity(r): r.id for r in records}
    taken: set[int] = set()
    known: dict[Identity, int] = {}
    for ident, item in items.items():
        found = by_identity.get(ident)
        if found is None and item.key is not None:
            found = by_identity.get(("content", item.modality, item.content_hash))
        if found is not None and found not in taken:
            known[ident] = found
            taken.add(found)
    return known


def keep_live_metadata(items: dict[Identity, NewItem], known: dict[Identity, int],
                       records: Sequence[Record]) -> None:
    """A corpus row has no metadata: a planned item without any keeps its live item's."""
    by_id = {r.id: r for r in records}
    for ident, item_id in known.items():
        if not items[ident].metadata and by_id[item_id].metadata:
            items[ident] = replace(items[ident], metadata=by_id[item_id].metadata)


def as_new(record: Record) -> NewItem:
    modality: Literal["image", "text"] = "image" if record.modality == "image" else "text"
    return NewItem(modality, record.content_hash, record.labels, record.text, record.source,
                   record.key, record.metadata)
