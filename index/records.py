"""Items as the index layer takes and returns them, and the content hashes that decide "the
same item" for items without a key: ingesting equal content twice returns one id.

Texts are hashed after Unicode NFC normalisation and whitespace collapsing, so two encodings of
one caption are one item; image bytes are hashed as they are (a re-encoded image is new content).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from index.payload import check_key, dump_metadata


def text_hash(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text_hash takes str, not {type(text).__name__}")
    normal = " ".join(unicodedata.normalize("NFC", text).split())
    return "t:" + hashlib.sha256(normal.encode("utf-8")).hexdigest()


def bytes_hash(content: bytes) -> str:
    if not isinstance(content, bytes | bytearray | memoryview):
        raise TypeError(f"bytes_hash takes bytes, not {type(content).__name__}")
    return "b:" + hashlib.sha256(bytes(content)).hexdigest()


MODALITIES = ("image", "text")


def check_id(item_id: int) -> int:
    if isinstance(item_id, bool) or not isinstance(item_id, int | np.integer):
        raise TypeError(f"item id must be an int, not {type(item_id).__name__}")
    return int(item_id)


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return modality


@dataclass(frozen=True)
class NewItem:
    """An item to ingest; its vector travels beside it (one row of `vectors`).

    With a `key`, the item is the one of that key: an existing key is replaced (index.database
    explains the rule). `metadata` is checked here (index.payload) and kept as a fresh copy."""

    modality: Literal["image", "text"]
    content_hash: str  # text_hash(text) / bytes_hash(image bytes)
    labels: tuple[str, ...] = ()  # coarse -> fine; may be empty for user items
    text: str | None = None  # text items; image items: the caption it was paired with
    source: str | None = None  # image items: absolute path or URI of the image file
    key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_modality(self.modality)
        check_key(self.key)
        object.__setattr__(self, "metadata", json.loads(dump_metadata(self.metadata)))
        if not isinstance(self.content_hash, str) or not self.content_hash:
            raise ValueError("content_hash must be a non-empty string")
        if self.modality == "text" and not (isinstance(self.text, str) and self.text.strip()):
            raise ValueError("a text item needs a non-empty text")
        if self.text is not None and not isinstance(self.text, str):
            raise TypeError(f"text must be a string, not {type(self.text).__name__}")
        if self.modality == "image" and not (isinstance(self.source, str) and self.source):
            raise ValueError("an image item needs its source (path or URI of the image file)")
        if not all(isinstance(label, str) for label in self.labels):
            raise TypeError("labels must be strings")


@dataclass(frozen=True)
class Record:
    """An ingested item as get() and search hits return it."""

    id: int
    modality: str
    labels: tuple[str, ...]
    text: str | None
    source: str | None
    content_hash: str
    checkpoint_id: str
    key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    record: Record
    # Hybrid search (index.hybrid): each signal's score of this item, None where the signal
    # did not propose it; None for a plain vector search.
    signals: dict[str, float | None] | None = field(default=None, compare=False)
