"""The vectorised metrics against plain loops over queries and ranks."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation.metrics import (
    average_precisions,
    cross_modal_map,
    hierarchical_average_precisions,
    precision_recall_curve,
    recall_at_k,
    recall_at_k_relevant,
)
from tests.fixtures import random_unit


def naive_graded_ap(scores: list[float], relevance: list[float]) -> float:
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    seen, total, ap = 0.0, sum(relevance), 0.0
    for rank, j in enumerate(order, start=1):
        seen += relevance[j]
        ap += relevance[j] * seen / rank
    return ap / total if total > 0 else 0.0


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 3, size=40)
    fine = coarse * 4 + rng.integers(0, 4, size=40)
    labels = np.stack([coarse, fine], axis=1)
    return random_unit(40, 8, rng), random_unit(40, 8, rng), labels, rng.integers(0, 50, size=40)


def test_average_precision_matches_loop(data) -> None:
    queries, database, labels, _ = data
    fast = average_precisions(queries, labels[:, 1], database, labels[:, 1])
    for q in range(len(queries)):
        scores = list(database @ queries[q])
        rel = [float(labels[j, 1] == labels[q, 1]) for j in range(len(database))]
        assert fast[q] == pytest.approx(naive_graded_ap(scores, rel))


def test_query_without_relevant_item_counts_zero(data) -> None:
    queries, database, _, odd = data
    db_labels = np.full(len(database), 999)
    assert np.all(average_precisions(queries, odd, database, db_labels) == 0)


def test_hierarchical_ap_matches_loop(data) -> None:
    queries, database, labels, _ = data
    fast = hierarchical_average_precisions(queries, labels, database, labels)
    for q in range(len(queries)):
        rel = []
        for j in range(len(database)):
            matched = 0
            for level in range(labels.shape[1]):
                if labels[j, level] != labels[q, level]:
                    break
                matched += 1
            rel.append(matched / labels.shape[1])
        assert fast[q] == pytest.approx(naive_graded_ap(list(database @ queries[q]), rel))
    # it lies between the fine-label mAP and a relevance that ignores the fine level
    assert fast.mean() >= average_precisions(queries, labels[:, 1], database, labels[:, 1]).mean()


def test_perfect_embeddings_score_one() -> None:
    labels = np.repeat(np.arange(5), 3)
    prototypes = np.eye(8)[labels]
    assert cross_modal_map(prototypes, prototypes, labels)["avg_map"] == pytest.approx(1.0)


def test_recall_matches_loop(data) -> None:
    queries, database, _, _ = data
    fast = recall_at_k(queries, database, (1, 5, 10))
    for k in (1, 5, 10):
        hits = 0
        for q in range(len(queries)):
            scores = database @ queries[q]
            hits += sum(1 for s in scores if s > scores[q]) + 1 <= k
        assert fast[f"R@{k}"] == pytest.approx(hits / len(queries))


def test_precision_recall_curve_matches_loop(data) -> None:
    queries, database, labels, _ = data
    grid, fast = precision_recall_curve(queries, labels[:, 1], database, labels[:, 1], points=11)
    curves = []
    for q in range(len(queries)):
        scores = database @ queries[q]
        order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
        rel = [labels[j, 1] == labels[q, 1] for j in order]
        total = sum(rel)
        if not total:
            continue
        points, hits = [], 0
        for rank, r in enumerate(rel, start=1):
            hits += r
            points.append((hits / total, hits / rank))
        curves.append([max(p for rc, p in points if rc >= level - 1e-12) for level in grid])
    assert fast == pytest.approx(np.mean(curves, axis=0))


def test_recall_with_several_relevant_items_matches_a_loop() -> None:
    """Each query hits at k when its best-ranked relevant item is in the top k; a query with
    no relevant item is a miss; one relevant item per row on the diagonal is recall_at_k."""
    rng = np.random.default_rng(3)
    queries, database = random_unit(30, 8, rng), random_unit(50, 8, rng)
    relevant = rng.random((30, 50)) < 0.05
    relevant[0] = False
    found = recall_at_k_relevant(queries, database, relevant)
    scores = queries @ database.T
    for k in (1, 5, 10):
        hits = 0
        for q in range(30):
            top = sorted(range(50), key=lambda j: -scores[q, j])[:k]
            hits += any(relevant[q, j] for j in top)
        assert found[f"R@{k}"] == pytest.approx(hits / 30)
    square = random_unit(50, 8, rng)
    assert recall_at_k_relevant(square, database, np.eye(50, dtype=bool)) == recall_at_k(
        square, database)
