"""Retrieval metrics over whole databases (mAP@all), vectorised; tests check them against loops.

Queries are processed in chunks of rows so a large database never needs an (n, n) matrix of
every query at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK = 1024


def _chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, CHUNK):
        yield slice(start, min(start + CHUNK, n))


def _ranked(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """Database indices of each query, best first (cosine; ties keep database order)."""
    return np.argsort(-(queries @ database.T), axis=1, kind="stable")


def _graded_ap(relevance: np.ndarray) -> np.ndarray:
    """AP of each row of a ranked relevance matrix (1 = relevant; fractions = partly relevant).

    AP = sum_k rel_k * P@k / sum_k rel_k with P@k = sum_{j<=k} rel_j / k; with 0/1 relevance
    this is the usual AP. A query with nothing relevant gets 0 (it counts against the mean).
    """
    ranks = np.arange(1, relevance.shape[1] + 1)
    precision = np.cumsum(relevance, axis=1) / ranks
    total = relevance.sum(axis=1)
    return np.where(total > 0, (relevance * precision).sum(axis=1) / np.maximum(total, 1e-12), 0.0)


def average_precisions(
    queries: np.ndarray, query_labels: np.ndarray, database: np.ndarray, db_labels: np.ndarray
) -> np.ndarray:
    """AP of each query ranking the whole database by cosine (rows are unit vectors).

    Relevant = same label. A query with no relevant item gets AP 0 (it counts against the mean,
    as in the usual mAP@all protocol).
    """
    out = []
    for rows in _chunks(len(queries)):
        out.append(
            average_precisions_of_scores(queries[rows] @ database.T, query_labels[rows], db_labels)
        )
    return np.concatenate(out) if out else np.zeros(0)


def average_precisions_of_scores(
    scores: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray
) -> np.ndarray:
    """AP of each row of a (queries, database) score matrix (e.g. after re-ranking)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return _graded_ap((db_labels[order] == query_labels[:, None]).astype(np.float64))


def hierarchical_relevance(query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """(nq, ndb) graded relevance: the share of levels matched from the coarsest down.

    Labels are (n, levels) coarse to fine. Same fine label (and so every coarser one) = 1;
    same coarse label only = 1/L per matched leading level; different coarse label = 0.
    """
    levels = query_labels.shape[1]
    same = query_labels[:, None, :] == db_labels[None, :, :]
    return np.cumprod(same, axis=2).sum(axis=2) / levels


def hierarchical_average_precisions(
    queries: np.ndarray, query_labels: np.ndarray, database: np.ndarray, db_labels: np.ndarray
) -> np.ndarray:
    """Graded AP with `hierarchical_relevance`: coarse-only matches count, weighted lower."""
    out = []
    for rows in _chunks(len(queries)):
        order = _ranked(queries[rows], database)
        relevance = hierarchical_relevance(query_labels[rows], db_labels)
        out.append(_graded_ap(np.take_along_axis(relevance, order, axis=1)))
    return np.concatenate(out) if out else np.zeros(0)


def mean_average_precision(
    queries: np.ndarray, query_labels: np.ndarray, database: np.ndarray, db_labels: np.ndarray
) -> float:
    return float(average_precisions(queries, query_labels, database, db_labels).mean())


def cross_modal_map(images: np.ndarray, texts: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Image-to-text, text-to-image and their mean, each modality as the other's database."""
    i2t = mean_average_precision(images, labels, texts, labels)
    t2i = mean_average_precision(texts, labels, images, labels)
    return {"i2t_map": i2t, "t2i_map": t2i, "avg_map": (i2t + t2i) / 2}


def recall_at_k(
    queries: np.ndarray, database: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """Share of queries whose paired item (same row) is in the top k of the database.

    Rank = number of database items scoring strictly higher than the pair, plus one.
    """
    hits = {k: 0 for k in ks}
    for rows in _chunks(len(queries)):
        scores = queries[rows] @ database.T
        paired = scores[np.arange(scores.shape[0]), np.arange(rows.start, rows.stop)]
        rank = (scores > paired[:, None]).sum(axis=1) + 1
        for k in ks:
            hits[k] += int((rank <= k).sum())
    return {f"R@{k}": hits[k] / max(len(queries), 1) for k in ks}


def recall_at_k_relevant(
    queries: np.ndarray, database: np.ndarray, relevant: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
) -> dict[str, float]:
    """Share of queries with a relevant database item in the top k; relevant is (nq, ndb) bool
    (several captions of one image are all relevant to it). Rank = number of database items
    scoring strictly higher than the best relevant one, plus one; no relevant item = a miss."""
    hits = {k: 0 for k in ks}
    for rows in _chunks(len(queries)):
        scores = queries[rows] @ database.T
        best = np.where(relevant[rows], scores, -np.inf).max(axis=1, initial=-np.inf)
        rank = (scores > best[:, None]).sum(axis=1) + 1
        rank[np.isneginf(best)] = len(database) + 1
        for k in ks:
            hits[k] += int((rank <= k).sum())
    return {f"R@{k}": hits[k] / max(len(queries), 1) for k in ks}


def precision_recall_curve(
    queries: np.ndarray,
    query_labels: np.ndarray,
    database: np.ndarray,
    db_labels: np.ndarray,
    points: int = 21,
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision (max precision at recall >= r) at `points` recall levels, mean
    over the queries that have a relevant item."""
    recall_grid = np.linspace(0, 1, points)
    curves = []
    for rows in _chunks(len(queries)):
        order = _ranked(queries[rows], database)
        relevant = db_labels[order] == query_labels[rows, None]
        total = relevant.sum(axis=1)
        keep = total > 0
        hits = np.cumsum(relevant[keep], axis=1)
        precision = hits / np.arange(1, relevant.shape[1] + 1)
        recall = hits / total[keep, None]
        # interpolate: best precision at any rank whose recall reaches r
        best_after = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        first = np.stack([np.argmax(recall >= r - 1e-12, axis=1) for r in recall_grid], axis=1)
        curves.append(np.take_along_axis(best_after, first, axis=1))
    mean = np.concatenate(curves).mean(axis=0) if curves else np.zeros(points)
    return recall_grid, mean
