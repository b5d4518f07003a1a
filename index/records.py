"""Content hashes that decide "the same item": ingesting equal content twice returns one id.

Texts are hashed after Unicode NFC normalisation and whitespace collapsing, so two encodings of
one caption are one item; image bytes are hashed as they are (a re-encoded image is new content).
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Literal


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


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return modality


@dataclass(frozen=True)
class NewItem:
    """An item to ingest; its vector travels beside it (one row of `vectors`)."""

    modality: Literal["image", "text"]
    content_hash: str  # text_hash(text) / bytes_hash(image bytes)
    labels: tuple[str, ...] = ()  # coarse -> fine; may be empty for user items
    text: str | None = None  # text items
    source: str | None = None  # image items: absolute path or URI of the image file

    def __post_init__(self) -> None:
        check_modality(self.modality)
        if not isinstance(self.content_hash, str) or not self.content_hash:
            raise ValueError("content_hash must be a non-empty string")
        if self.modality == "text" and not (isinstance(self.text, str) and self.text.strip()):
            raise ValueError("a text item needs a non-empty text")
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


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    record: Record
