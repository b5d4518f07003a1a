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

    def fuse(self, signals: Mapping[str, np.ndarray], valid: np.ndarray | None = None,
             present: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """One fused score per candidate (last axis), higher is better. `signals`: each signal's
        scores of the same candidates, (n,) or (queries, n); `valid`: which candidates of a row
        count (None: all; the others score -inf); `present`: per signal, the rows it proposed
        anything for (None: all). A signal left out, or not present in a row, adds nothing.
        Every weighted signal is scored at once, stacked on a first axis."""
        shape = np.shape(next(iter(signals.values())))
        valid = np.ones(shape, bool) if valid is None else valid
        names = [name for name, weight in self.weights.items() if weight and name in signals]
        if not names:
            return np.where(valid, 0.0, -np.inf)
        stacked = np.stack([np.asarray(signals[name], np.float64) for name in names])
        per_signal = (-1, *[1] * len(shape))  # one value per signal, against `stacked`
        if self.method == "zscore":
            parts = zscore(stacked, valid)
        else:
            lexical = np.array([name == "lexical" for name in names]).reshape(per_signal)
            parts = _reciprocal_rank(stacked, valid, lexical)
        parts = parts * np.array([self.weights[name] for name in names]).reshape(per_signal)
        if present is not None:
            parts = parts * np.stack([present[name] for name in names])[..., None]
        return np.where(valid, parts.sum(axis=0), -np.inf)


def zscore(scores: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Scores minus their mean over their standard deviation, along the last axis, over the
    `valid` entries only (None: all); 0 where a row's valid scores are all equal, and at the
    entries that are not valid."""
    scores = np.asarray(scores, dtype=np.float64)
    valid = np.ones(scores.shape, bool) if valid is None else valid
    count = np.maximum(valid.sum(axis=-1, keepdims=True), 1)
    mean = np.where(valid, scores, 0.0).sum(axis=-1, keepdims=True) / count
    centred = np.where(valid, scores - mean, 0.0)
    std = np.sqrt((centred * centred).sum(axis=-1, keepdims=True) / count)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 1e-12)


def _reciprocal_rank(scores: np.ndarray, valid: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    """1 / (RRF_K + rank) among the valid entries, rank 1 the best, ties in entry order; an
    entry that is not valid contributes 0, and so does a lexical non-match (score 0): `lexical`
    says, broadcast against `scores`, which entries are lexical scores."""
    scores = np.where(valid, np.asarray(scores, dtype=np.float64), -np.inf)
    order = np.argsort(-scores, axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[-1] + 1)
                      * np.ones_like(order), axis=-1)
    counts = valid & ((scores > 0) | ~lexical)
    return np.where(counts, 1.0 / (RRF_K + ranks), 0.0)


def fuse_proposals(fusion: Fusion, proposals: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   depth: int = DEPTH) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The hybrid ranking of a batch of queries from what each signal proposes:
    `proposals[signal]` = (ids, scores), each (queries, n): per row its best `depth` items, id
    -1 where it has fewer. A row's candidates are the union of its proposals; a candidate a
    signal did not propose gets that signal's lowest proposed score in the row (its score is at
    most that), or 0 for a lexical list that was not full (the candidate holds none of the
    query's words). Returns (ids, fused scores), (queries, width), each row best first (ties by
    id) and padded with id -1 / score -inf; and each signal's score per returned id, NaN where
    the signal did not propose it."""
    names = list(proposals)
    ids = np.concatenate([np.asarray(proposals[n][0], np.int64) for n in names], axis=1)
    scores = np.concatenate([np.asarray(proposals[n][1], np.float64) for n in names], axis=1)
    owner = np.repeat(np.arange(len(names)), [np.shape(proposals[n][0])[1] for n in names])
    # Sorting each row's proposed ids lines up the proposals of one candidate; the candidate's
    # column is the count of distinct ids before it. Absent proposals sort last.
    order = np.argsort(np.where(ids < 0, np.iinfo(np.int64).max, ids), axis=1, kind="stable")
    ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
    owner, proposed = owner[order], ids >= 0
    first = proposed.copy()
    first[:, 1:] &= ids[:, 1:] != ids[:, :-1]
    column = np.cumsum(first, axis=1) - 1
    counts = first.sum(axis=1)
    width = int(counts.max()) if len(counts) else 0
    rows = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)
    candidates = np.full((len(ids), width), -1, np.int64)
    candidates[rows[first], column[first]] = ids[first]
    valid = candidates >= 0
    # Every signal's score of every candidate at once: (signals, queries, width), NaN where the
    # signal did not propose the candidate, then filled in as the docstring says.
    given = np.stack([(np.asarray(proposals[name][0]) >= 0).sum(axis=1) for name in names])
    found = np.full((len(names), len(ids), width), np.nan)
    found[owner[proposed], rows[proposed], column[proposed]] = scores[proposed]
    lowest = np.fmin.reduce(found, axis=2, initial=np.inf)  # fmin skips the NaNs
    lexical = np.array([name == "lexical" for name in names])[:, None]
    empty = (given == 0) | lexical & (given < depth)
    filled = np.where(np.isnan(found), np.where(empty, 0.0, lowest)[..., None], found)
    fused = fusion.fuse(dict(zip(names, filled, strict=True)), valid,
                        dict(zip(names, given > 0, strict=True)))
    best = np.argsort(-fused, axis=1, kind="stable")  # candidates are in id order: ties by id
    return (np.take_along_axis(candidates, best, 1), np.take_along_axis(fused, best, 1),
            dict(zip(names, np.take_along_axis(found, best[None], 2), strict=True)))


def proposals_of(scores: Mapping[str, np.ndarray], depth: int = DEPTH
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What each signal proposes for each query row, from its (queries, items) scores of every
    item (an evaluation over a whole split; an index gets the same lists from its searches):
    the best `depth`, ties by item, and for lexical only items that hold a query word (id -1
    for the rest)."""
    out = {}
    for name, matrix in scores.items():
        top = np.argsort(-matrix, axis=1, kind="stable")[:, :depth]
        best = np.take_along_axis(matrix, top, 1)
        out[name] = (np.where(best > 0, top, -1) if name == "lexical" else top, best)
    return out


def hybrid_scores(signals: Mapping[str, np.ndarray], fusion: Fusion,
                  depth: int = DEPTH) -> np.ndarray:
    """Fused (queries, items) scores as a served query gets them (`fuse_proposals` over
    `proposals_of`); items no signal proposed rank after all candidates."""
    ids, fused, _ = fuse_proposals(fusion, proposals_of(signals, depth), depth)
    out = np.full(next(iter(signals.values())).shape, -np.inf)
    rows = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)
    out[rows[ids >= 0], ids[ids >= 0]] = fused[ids >= 0]
    return out
