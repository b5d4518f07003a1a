"""Text queries ranked by more than one signal (models.fusion explains the signals and how
they are combined), over one opened generation: each signal proposes its best items from its
own store (the item vectors, the caption vectors, the lexical table), with the same filters,
and the proposals are fused. The catalog calls this under its lock.

Modes: `vector` (the item vectors alone, as before hybrid search), `lexical` (BM25 alone: only
items holding a query word), `hybrid` (all signals). Against text items the item's own vector
is the embedding of its words, so it stands in the `caption` signal and `vector` has no part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from index.generation import Generation
from index.records import Hit, Record
from models.fusion import DEPTH, Fusion, fuse_proposals
from models.lexical import query_tokens

Mode = Literal["hybrid", "vector", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "lexical")
Proposals = dict[str, tuple[np.ndarray, np.ndarray]]  # signal: (ids, scores), (queries, n)


def search(gen: Generation, queries: np.ndarray, texts: Sequence[str], k: int, modality: str,
           allow: np.ndarray | None, mode: Mode, fusion: Fusion) -> list[list[Hit]]:
    """Per query row (its text beside it), the best `k` items of `modality` in mode `hybrid` or
    `lexical` (the catalog searches `vector` itself); each hit's `signals` holds every signal's
    score of it (None where that signal did not propose it). `allow`: the ids the filters leave
    (None: no filter), resolved by the caller."""
    depth = k if mode == "lexical" else max(k, DEPTH)
    proposals = {} if mode == "lexical" else _vector_proposals(gen, queries, modality, depth, allow)
    proposals["lexical"] = _lexical_proposals(gen, texts, modality, depth, allow)
    if mode == "hybrid":
        ids, scores, signals = fuse_proposals(fusion, proposals, depth)
    else:
        ids, scores = proposals["lexical"]
        signals = {"lexical": scores}
    ids, scores = ids[:, :k], scores[:, :k]
    records = gen.meta.get_many(sorted(set(ids[ids >= 0].tolist())))
    return [_hits(records, ids[row], scores[row], {s: v[row, :k] for s, v in signals.items()})
            for row in range(len(ids))]


def _vector_proposals(gen: Generation, queries: np.ndarray, modality: str, depth: int,
                      allow: np.ndarray | None) -> Proposals:
    """What the vector stores propose for every row: one search of each store."""
    spaces = {"vector": "image", "caption": "caption"} if modality == "image" else \
        {"caption": "text"}
    proposals: Proposals = {}
    for signal, space in spaces.items():
        scores, ids = gen.stores[space].search(queries, depth, allow)
        proposals[signal] = (ids.astype(np.int64), scores.astype(np.float64))
    return proposals


def _lexical_proposals(gen: Generation, texts: Sequence[str], modality: str, depth: int,
                       allow: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """BM25's best `depth` per text (models.bm25), padded with id -1 and score 0."""
    ids, scores = np.full((len(texts), depth), -1, np.int64), np.zeros((len(texts), depth))
    lexicon = gen.lexicon(modality)
    for row, text in enumerate(texts):
        found, score = lexicon.best(query_tokens(text), depth, allow)
        ids[row, :len(found)], scores[row, :len(found)] = found, score
    return ids, scores


def _hits(records: Mapping[int, Record], ids: np.ndarray, scores: np.ndarray,
          signals: Mapping[str, np.ndarray]) -> list[Hit]:
    columns = {name: values.tolist() for name, values in signals.items()}
    return [Hit(item_id, score, records[item_id],
                {name: None if math.isnan(c[n]) else c[n] for name, c in columns.items()})
            for n, (item_id, score) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True))
            if item_id in records]
