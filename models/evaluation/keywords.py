"""What people type: keyword queries against the images of a split, and exact-item recall.

Queries are the distinct keywords of the split's items (a corpus's `keywords.json`, which
lists no item's own name); an image is relevant to a query when its item lists that keyword;
the database is the split's images (one per distinct image). Reported: mAP@all and
success@10 (share of queries with a relevant image in the top 10), beside two references from
the same run: chance (closed form) and caption search (the raw text backbone between the query
and each image's own caption: what a search over captions would give).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.data.corpus import Item
from models.evaluation.metrics import _chunks, _graded_ap

TOP = 10


@dataclass(frozen=True)
class KeywordQueries:
    texts: list[str]  # the distinct keywords, sorted
    relevance: np.ndarray  # bool (queries, images)

    def __len__(self) -> int:
        return len(self.texts)


def image_rows(items: Sequence[Item]) -> list[int]:
    """The first row of each distinct image, in order: the database of keyword search (its
    text is the image's caption for the caption-search reference)."""
    first: dict[str, int] = {}
    for row, item in enumerate(items):
        first.setdefault(item.image, row)
    return list(first.values())


def keyword_queries(image_keywords: Sequence[Sequence[str]]) -> KeywordQueries:
    """Queries and relevance from each database image's keywords (row = image)."""
    texts = sorted({word for words in image_keywords for word in words})
    column = {word: i for i, word in enumerate(texts)}
    relevance = np.zeros((len(texts), len(image_keywords)), dtype=bool)
    for image, words in enumerate(image_keywords):
        relevance[[column[w] for w in words], image] = True
    return KeywordQueries(texts, relevance)


def ranking_metrics(scores: np.ndarray, relevance: np.ndarray) -> dict[str, float]:
    """mAP@all and success@10 of a (queries, images) score matrix."""
    aps, hits = [], []
    for rows in _chunks(len(scores)):
        order = np.argsort(-scores[rows], axis=1, kind="stable")
        ranked = np.take_along_axis(relevance[rows], order, axis=1).astype(np.float64)
        aps.append(_graded_ap(ranked))
        hits.append(ranked[:, :TOP].any(axis=1))
    return {
        "map": float(np.concatenate(aps).mean()) if aps else 0.0,
        "success_at_10": float(np.concatenate(hits).mean()) if hits else 0.0,
    }


def chance(relevance: np.ndarray) -> dict[str, float]:
    """Expected mAP and success@10 of a random ranking (closed forms, no sampling).

    E[AP] = H_N / N + (R - 1) / (N - 1) * (1 - H_N / N) for R relevant among N;
    P(success@k) = 1 - C(N - R, k) / C(N, k).
    """
    n = relevance.shape[1]
    r = relevance.sum(axis=1).astype(np.float64)
    h = np.sum(1.0 / np.arange(1, n + 1))
    ap = np.where(r > 0, h / n + (r - 1) / max(n - 1, 1) * (1 - h / n), 0.0)
    miss = np.ones_like(r)
    for i in range(min(TOP, n)):
        miss *= np.clip((n - r - i) / (n - i), 0, 1)
    return {"map": float(ap.mean()), "success_at_10": float((1 - miss).mean())}


def keyword_report(
    queries: KeywordQueries,
    query_vectors: np.ndarray,
    image_vectors: np.ndarray,
    raw_queries: np.ndarray,
    raw_captions: np.ndarray,
    seen: set[str] | None = None,
) -> dict[str, object]:
    """The learned space's keyword metrics with both references, and split by whether the
    query was a training caption (`seen`: the training texts) where that is known.

    query_vectors / image_vectors: unit embeddings in the shared space; raw_queries /
    raw_captions: the text backbone's own vectors of the queries and of each image's caption.
    """
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    learned_scores = query_vectors @ image_vectors.T
    caption_scores = unit(raw_queries) @ unit(raw_captions).T
    report: dict[str, object] = {
        **ranking_metrics(learned_scores, queries.relevance),
        "n_queries": len(queries),
        "n_images": int(queries.relevance.shape[1]),
        "chance": chance(queries.relevance),
        "caption_search": ranking_metrics(caption_scores, queries.relevance),
    }
    if seen is not None:  # queries that were (or were not) a training caption
        known = np.array([text in seen for text in queries.texts], dtype=bool)
        for name, rows in (("seen", known), ("unseen", ~known)):
            report[name] = {
                "n_queries": int(rows.sum()),
                **ranking_metrics(learned_scores[rows], queries.relevance[rows]),
                "caption_search": ranking_metrics(caption_scores[rows], queries.relevance[rows]),
            }
    return report
