"""Keyword-query metrics against naive loops, and chance's closed form against sampling."""

from __future__ import annotations

import numpy as np

from models.evaluation.keywords import chance, keyword_queries, ranking_metrics


def naive(scores: np.ndarray, relevance: np.ndarray) -> tuple[float, float]:
    aps, hits = [], []
    for row, rel in zip(scores, relevance, strict=True):
        order = sorted(range(len(row)), key=lambda i: -row[i])
        found, precisions = 0, []
        for rank, i in enumerate(order, start=1):
            if rel[i]:
                found += 1
                precisions.append(found / rank)
        aps.append(sum(precisions) / max(rel.sum(), 1))
        hits.append(any(rel[i] for i in order[:10]))
    return float(np.mean(aps)), float(np.mean(hits))


def test_queries_and_relevance_from_image_keywords() -> None:
    queries = keyword_queries([["cat", "pet"], ["pet"], []])
    assert queries.texts == ["cat", "pet"]
    assert queries.relevance.tolist() == [[True, False, False], [True, True, False]]


def test_ranking_metrics_match_a_loop() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(30, 40))
    relevance = rng.random((30, 40)) < 0.08
    relevance[0] = False  # a query with nothing relevant counts as 0
    got = ranking_metrics(scores, relevance)
    want_map, want_success = naive(scores, relevance)
    assert np.isclose(got["map"], want_map) and np.isclose(got["success_at_10"], want_success)


def test_chance_closed_form_matches_random_rankings() -> None:
    rng = np.random.default_rng(1)
    relevance = np.zeros((3, 50), dtype=bool)
    relevance[0, :1] = relevance[1, :5] = relevance[2, :20] = True
    sampled = [ranking_metrics(rng.random((3, 50)), relevance) for _ in range(3000)]
    expected = chance(relevance)
    for key in ("map", "success_at_10"):
        assert abs(np.mean([s[key] for s in sampled]) - expected[key]) < 0.01
