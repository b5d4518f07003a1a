"""Text queries ranked by more than one signal (models.fusion explains the signals and how
they are combined), over one opened generation: each signal proposes its best items from its
own store (the item vectors, the caption vectors, the lexical table), with the same filters,
and the proposals are fused. The catalog calls this under its lock.

Modes: `vector` (the item vectors alone, as before hybrid search), `lexical` (BM25 alone: only
items holding a query word), `hybrid` (all signals). Against text items the item's own vector
is the embedding of its words, so it stands in the `caption` signal and `vector` has no part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from index.generation import Generation
from index.records import Hit, Record
from models.fusion import DEPTH, Fusion, fuse_proposals
from models.lexical import query_tokens

Mode = Literal["hybrid", "vector", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "lexical")
Proposals = dict[str, tuple[np.ndarray, np.ndarray]]


def search(gen: Generation, queries: np.ndarray, texts: Sequence[str], k: int, modality: str,
           allow: np.ndarray | None, mode: Mode, fusion: Fusion) -> list[list[Hit]]:
    """Per query row (its text beside it), the best `k` items of `modality`; each hit's
    `signals` holds every signal's score of it (None where that signal did not propose it).
    `allow`: the ids the filters leave (None: no filter), resolved by the caller."""
    depth = k if mode == "lexical" else max(k, DEPTH)
    rows = [{} for _ in texts] if mode == "lexical" else \
        _vector_proposals(gen, queries, modality, depth, allow)
    ranked = []
    for proposals, text in zip(rows, texts, strict=True):
        if mode != "vector":
            proposals["lexical"] = gen.lexicon(modality).best(query_tokens(text), depth, allow)
        if mode == "hybrid":
            ids, scores, signals = fuse_proposals(fusion, proposals, depth)
        else:
            (ids, scores), = proposals.values()
            signals = {next(iter(proposals)): scores}
        ranked.append((ids[:k], scores[:k], {s: v[:k] for s, v in signals.items()}))
    records = gen.meta.get_many(sorted({int(i) for ids, _, _ in ranked for i in ids}))
    return [_hits(records, *row) for row in ranked]


def _vector_proposals(gen: Generation, queries: np.ndarray, modality: str, depth: int,
                      allow: np.ndarray | None) -> list[Proposals]:
    """Per query row, what the vector stores propose: one search of each store for all rows."""
    spaces = {"vector": "image", "caption": "caption"} if modality == "image" else \
        {"caption": "text"}
    rows: list[Proposals] = [{} for _ in queries]
    for signal, space in spaces.items():
        scores, ids = gen.stores[space].search(queries, depth, allow)
        for proposals, row_scores, row_ids in zip(rows, scores, ids, strict=True):
            keep = row_ids >= 0
            proposals[signal] = (row_ids[keep].astype(np.int64),
                                 row_scores[keep].astype(np.float64))
    return rows


def _hits(records: Mapping[int, Record], ids: np.ndarray, scores: np.ndarray,
          signals: Mapping[str, np.ndarray]) -> list[Hit]:
    hits = []
    for n, item_id in enumerate(ids.tolist()):
        if item_id in records:
            explained = {name: None if np.isnan(v[n]) else float(v[n])
                         for name, v in signals.items()}
            hits.append(Hit(item_id, float(scores[n]), records[item_id], explained))
    return hits
