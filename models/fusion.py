"""Hybrid ranking: several scores of the same candidates combined into one order.

A text query meets an image item through three signals: `vector` (the learned cross-modal
cosine between the query and the image), `caption` (the cosine, in the same shared space,
between the query and the image's own words: its caption and chosen metadata fields) and
`lexical` (BM25 of the query's words in those words, models.lexical). Each signal proposes its
best `depth` items; their union are the candidates, and every candidate is scored on every
signal (a candidate whose words hold none of the query's words has lexical score 0).

Two ways to combine, both per query over its candidates:
- `zscore`: each signal standardised (minus its mean, over its standard deviation), then a
  weighted sum. Scales differ between signals and between queries (a cosine spread of 0.1
  against BM25 values of 0 to 15); standardising makes the weights mean the same everywhere.
- `rrf`: reciprocal rank fusion, sum of weight / (60 + rank), which ignores the scores' values.

Which one, and its weights, is chosen on validation queries (bench.fusion), written into each
index generation's manifest, and may be overridden per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SIGNALS = ("vector", "caption", "lexical")
DEPTH = 100  # candidates each signal proposes (at least k)
RRF_K = 60.0


@dataclass(frozen=True)
class Fusion:
    method: Literal["zscore", "rrf"] = "zscore"
    # The default: the best of bench.fusion's side-by-side on validation (bench/results/fusion.md).
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"vector": 0.05, "caption": 0.3, "lexical": 0.65})

    def __post_init__(self) -> None:
        if self.method not in ("zscore", "rrf"):
            raise ValueError(f"fusion method must be zscore or rrf, got {self.method!r}")
        unknown = set(self.weights) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown signals {sorted(unknown)}; the signals are {SIGNALS}")
        if any(not np.isfinite(w) or w < 0 for w in self.weights.values()):
            raise ValueError(f"weights must be finite and >= 0, got {dict(self.weights)}")
        if not any(self.weights.values()):
            raise ValueError("at least one weight must be above 0")
        object.__setattr__(self, "weights", {s: float(self.weights.get(s, 0.0)) for s in SIGNALS})

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "weights": dict(self.weights)}

    @classmethod
    def from_dict(cls, found: Mapping[str, object]) -> Fusion:
        weights = found.get("weights", {})
        if not isinstance(weights, Mapping):
            raise ValueError(f"fusion weights must be an object, got {weights!r}")
        return cls(str(found.get("method", "zscore")), dict(weights))  # type: ignore[arg-type]

    def with_weights(self, weights: Mapping[str, float]) -> Fusion:
        return Fusion(self.method, {**self.weights, **weights})

    def fuse(self, signals: Mapping[str, np.ndarray]) -> np.ndarray:
        """One fused score per candidate (last axis), higher is better. `signals`: each signal's
        scores of the same candidates, (n,) or (queries, n); signals left out count as absent
        (none of the weighted ones given: all candidates tie at 0)."""
        fused = np.zeros(np.shape(next(iter(signals.values()))))
        for name, weight in self.weights.items():
            if weight == 0 or name not in signals:
                continue
            part = weight * (zscore(signals[name]) if self.method == "zscore"
                             else _reciprocal_rank(signals[name], lexical=name == "lexical"))
            fused = fused + part
        return fused


def zscore(scores: np.ndarray) -> np.ndarray:
    centred = np.asarray(scores, dtype=np.float64)
    count = max(centred.shape[-1], 1)
    centred = centred - centred.sum(axis=-1, keepdims=True) / count
    std = np.sqrt((centred * centred).sum(axis=-1, keepdims=True) / count)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 1e-12)


def _reciprocal_rank(scores: np.ndarray, lexical: bool) -> np.ndarray:
    """1 / (RRF_K + rank), rank 1 the best; a lexical non-match (score 0) contributes 0."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[-1] + 1)
                      * np.ones_like(order), axis=-1)
    out = 1.0 / (RRF_K + ranks)
    return np.where(scores > 0, out, 0.0) if lexical else out


def fuse_proposals(fusion: Fusion, proposals: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   depth: int = DEPTH) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """One query's hybrid ranking from what each signal proposes: `proposals[signal]` =
    (ids, scores), its best `depth` items (fewer where fewer are eligible). The candidates are
    the union of the proposals; a candidate a signal did not propose gets that signal's lowest
    proposed score (its score is at most that), or 0 for a lexical list that was not full (the
    candidate holds none of the query's words). Returns (ids, fused scores) best first, and each
    signal's score per returned id, NaN where the signal did not propose it."""
    given = [(name, np.asarray(i, np.int64), np.asarray(s, np.float64))
             for name, (i, s) in proposals.items() if len(i)]
    if not given:
        return np.zeros(0, np.int64), np.zeros(0), {}
    ids, where = np.unique(np.concatenate([i for _, i, _ in given]), return_inverse=True)
    found: dict[str, np.ndarray] = {}
    filled: dict[str, np.ndarray] = {}
    start = 0
    for name, own_ids, own_scores in given:
        rows = where[start:start + len(own_ids)]
        start += len(own_ids)
        found[name] = np.full(len(ids), np.nan)
        found[name][rows] = own_scores
        floor = 0.0 if name == "lexical" and len(own_ids) < depth else own_scores.min()
        filled[name] = np.full(len(ids), floor)
        filled[name][rows] = own_scores
    fused = fusion.fuse(filled)
    order = np.lexsort((ids, -fused))
    return ids[order], fused[order], {name: c[order] for name, c in found.items()}


def proposals_of(scores: Mapping[str, np.ndarray], depth: int = DEPTH
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What each signal proposes for one query, from its scores of every item (an evaluation
    over a whole split; an index gets the same lists from its searches): the best `depth`,
    and for lexical only items that hold a query word."""
    out = {}
    for name, row in scores.items():
        eligible = np.flatnonzero(row > 0) if name == "lexical" else np.arange(len(row))
        top = eligible[np.argsort(-row[eligible], kind="stable")[:depth]]
        out[name] = (top, row[top])
    return out


def hybrid_scores(signals: Mapping[str, np.ndarray], fusion: Fusion,
                  depth: int = DEPTH) -> np.ndarray:
    """Fused (queries, items) scores as a served query gets them (`fuse_proposals` over
    `proposals_of` each row); items no signal proposed rank after all candidates."""
    n_queries, n_items = next(iter(signals.values())).shape
    out = np.full((n_queries, n_items), -np.inf)
    for row in range(n_queries):
        ids, fused, _ = fuse_proposals(
            fusion, proposals_of({name: s[row] for name, s in signals.items()}, depth), depth)
        out[row, ids] = fused
    return out
