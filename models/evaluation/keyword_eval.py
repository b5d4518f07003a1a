"""Keyword queries (models.evaluation.keywords) run through a trained method on a corpus split:
shared by `xmr eval`, the trainer's validation and bench/quality.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from models.backbones.cache import FeatureCache
from models.backbones.extract import text_features
from models.data.corpus import Item
from models.evaluation.hybrid_eval import mode_report
from models.evaluation.keywords import (
    KeywordQueries,
    image_rows,
    keyword_queries,
    keyword_report,
)
from models.features import Backbones, FeatureSet
from models.fusion import Fusion
from models.methods.base import Method

CHUNK = 512


def queries_of(
    items: Sequence[Item], rows: Sequence[int], keywords: Mapping[str, Sequence[str]]
) -> KeywordQueries | None:
    """Keyword queries of the images at `rows`; None when none of them has a keyword."""
    words = [list(keywords.get(items[r].id, ())) for r in rows]
    return keyword_queries(words) if any(words) else None


@torch.no_grad()
def embed_queries(method: Method, feats: object, device: torch.device) -> np.ndarray:
    """Unit shared-space vectors of text features (pooled, tokens, mask), in chunks."""
    method.eval()
    out = []
    n = len(feats.pooled)  # type: ignore[attr-defined]
    for start in range(0, n, CHUNK):
        part = slice(start, start + CHUNK)
        batch = {
            "pooled": torch.from_numpy(feats.pooled[part]).to(device).float(),  # type: ignore[attr-defined]
            "tokens": torch.from_numpy(feats.tokens[part]).to(device).float(),  # type: ignore[attr-defined]
            "mask": torch.from_numpy(feats.mask[part]).to(device),  # type: ignore[attr-defined]
        }
        out.append(method.embed_texts(method.transform_texts(batch)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def evaluate_keywords(
    method: Method,
    backbones: Backbones,
    items: Sequence[Item],
    features: FeatureSet,
    image_vectors: np.ndarray,
    keywords: Mapping[str, Sequence[str]],
    cache: FeatureCache,
    device: torch.device,
    seen: set[str] | None = None,
    encode: Callable[[list[str]], np.ndarray] | None = None,
    text_vectors: np.ndarray | None = None,
    fusion: Fusion | None = None,
) -> dict[str, object] | None:
    """Keyword metrics of a split whose rows (`items`, their backbone `features` and shared-
    space `image_vectors`) are given; None when its images carry no keyword. `seen` (the
    training texts) splits the figures into queries trained on and not. `encode`: what embeds
    the query texts instead of the method on their cached backbone features (a runtime).
    `text_vectors` (the rows' texts in the shared space) adds the hybrid and lexical modes
    (models.evaluation.hybrid_eval), fused by `fusion` (default: models.fusion's)."""
    rows = image_rows(items)
    queries = queries_of(items, rows, keywords)
    if queries is None:
        return None
    raw = text_features(queries.texts, backbones.text, cache, progress=False)
    query_vectors = embed_queries(method, raw, device) if encode is None else encode(queries.texts)
    report = keyword_report(queries, query_vectors, image_vectors[rows], raw.pooled,
                            features.text_pooled[rows], seen)
    if text_vectors is not None:
        report.update(mode_report(queries, query_vectors, image_vectors[rows],
                                  [items[r] for r in rows], text_vectors[rows],
                                  fusion or Fusion()))
    return report
