"""Keyword queries ranked as the service's text search ranks them (models.fusion): `lexical`
(BM25 of the query in each image's caption and labels) and `hybrid` (the learned cross-modal
score, the caption vector and BM25, fused), beside the learned score alone that
models.evaluation.keywords reports. Each mode also answers the exact-item question: does an
image's own caption, typed as a query, find that image first (R@1)?
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.data.corpus import Item
from models.evaluation.keywords import KeywordQueries, ranking_metrics
from models.fusion import Fusion, hybrid_scores
from models.lexical import bm25_matrix, document


def signals(query_texts: Sequence[str], query_vectors: np.ndarray, image_vectors: np.ndarray,
            images: Sequence[Item], caption_vectors: np.ndarray) -> dict[str, np.ndarray]:
    """(queries, images) scores of each signal against the corpus rows `images`:
    `caption_vectors` are their captions embedded by the text encoder (the shared space), and
    their lexical rows hold caption and labels, as an index stores them."""
    return {"vector": query_vectors @ image_vectors.T,
            "caption": query_vectors @ caption_vectors.T,
            "lexical": bm25_matrix(query_texts, [document(i.text, i.labels) for i in images])}


def mode_report(queries: KeywordQueries, query_vectors: np.ndarray, image_vectors: np.ndarray,
                images: Sequence[Item], caption_vectors: np.ndarray,
                fusion: Fusion) -> dict[str, object]:
    """The learned score's exact-item R@1 (`exact_r1`: an image's own caption typed as the
    query), and {map, success_at_10, exact_r1} of the `hybrid` and `lexical` modes."""
    captions = [item.text for item in images]
    keyword = signals(queries.texts, query_vectors, image_vectors, images, caption_vectors)
    exact = signals(captions, caption_vectors, image_vectors, images, caption_vectors)
    rank = {"vector": lambda s: s["vector"], "lexical": lambda s: s["lexical"],
            "hybrid": lambda s: hybrid_scores(s, fusion)}
    out: dict[str, object] = {"exact_r1": _r1(rank["vector"](exact))}
    for mode in ("hybrid", "lexical"):
        out[mode] = {**ranking_metrics(rank[mode](keyword), queries.relevance),
                     "exact_r1": _r1(rank[mode](exact))}
    return out


def _r1(scores: np.ndarray) -> float:
    """Share of rows whose own column (the diagonal) scores highest."""
    return float((np.argmax(scores, axis=1) == np.arange(len(scores))).mean())
