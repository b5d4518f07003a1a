"""The small types the retriever's parts pass between them: a vector with the checkpoint that
made it, what a search asks of the catalog, a stored item named by id or key, and the two ways
a vector can turn out to belong to another checkpoint than the index."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Vector:
    row: np.ndarray  # float32 (d,), unit norm
    checkpoint_id: str  # of the encoder that made it
    text: str | None = None  # the text it encodes (hybrid search matches its words)


class StaleVector(Exception):
    """The encoder changed between encoding and use; encode again."""


class CheckpointMismatch(Exception):
    """The index serves another checkpoint than the encoder, past the bounded wait: `loading`
    when that checkpoint's encoder is on its way (retry soon), else it cannot be loaded."""

    def __init__(self, detail: str, *, loading: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.loading = loading


@dataclass(frozen=True)
class SearchParams:
    """What a search asks of the catalog besides its vector; searches with equal params share
    one FAISS call."""
    modality: str
    k: int
    labels: tuple[tuple[str, str], ...]  # sorted (level, value) pairs
    where: tuple[tuple[str, str], ...] = ()  # sorted (field, canonical JSON value) pairs
    mode: str = "vector"  # index.hybrid's modes; hybrid and lexical need the query's text
    weights: tuple[tuple[str, float], ...] = ()  # sorted hybrid weights a request set

    def filters(self) -> dict[str, Any]:
        """The catalog's `labels` and `where` arguments."""
        return {"labels": dict(self.labels) or None,
                "where": {name: json.loads(value) for name, value in self.where} or None}


@dataclass(frozen=True)
class ItemRef:
    """A stored item, by id or by its key (exactly one)."""
    item_id: int | None = None
    item_key: str | None = None
