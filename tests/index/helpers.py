"""Seeded unit vectors for index tests: clustered like embeddings, not uniform noise."""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int = 32, centres: int = 20, spread: float = 0.3,
              seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = unit(rng.standard_normal((centres, dim)))
    rows = means[rng.integers(0, centres, n)] + spread / np.sqrt(dim) * rng.standard_normal(
        (n, dim))
    return unit(rows)


def exact(data: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Naive top-k ids by inner product (the slow path the index is checked against)."""
    scores = queries @ data.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[order]
