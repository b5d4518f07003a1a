"""Retrieval metrics over whole databases (mAP@all), vectorised; tests check them against loops."""

from __future__ import annotations

import numpy as np


def average_precisions(
    queries: np.ndarray, query_labels: np.ndarray, database: np.ndarray, db_labels: np.ndarray
) -> np.ndarray:
    """AP of each query ranking the whole database by cosine (rows are unit vectors).

    Relevant = same label. A query with no relevant item gets AP 0 (it counts against the mean,
    as in the usual mAP@all protocol).
    """
    scores = queries @ database.T
    order = np.argsort(-scores, axis=1, kind="stable")
    relevant = db_labels[order] == query_labels[:, None]
    hits = np.cumsum(relevant, axis=1)
    ranks = np.arange(1, database.shape[0] + 1)
    precision_at_hits = np.where(relevant, hits / ranks, 0.0)
    n_relevant = relevant.sum(axis=1)
    return np.where(n_relevant > 0, precision_at_hits.sum(axis=1) / np.maximum(n_relevant, 1), 0.0)


def mean_average_precision(
    queries: np.ndarray, query_labels: np.ndarray, database: np.ndarray, db_labels: np.ndarray
) -> float:
    return float(average_precisions(queries, query_labels, database, db_labels).mean())


def cross_modal_map(
    images: np.ndarray, texts: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Image-to-text, text-to-image and their mean, each modality as the other's database."""
    i2t = mean_average_precision(images, labels, texts, labels)
    t2i = mean_average_precision(texts, labels, images, labels)
    return {"i2t_map": i2t, "t2i_map": t2i, "avg_map": (i2t + t2i) / 2}
