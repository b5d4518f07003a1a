"""Hierarchical classification: a cross-entropy per label level, weighted, on both modalities."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def level_classification(
    logits: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    weights = weights or [1.0] * len(logits)
    return sum(
        w * F.cross_entropy(z, y, label_smoothing=0.1)
        for w, z, y in zip(weights, logits, labels, strict=True)
    )  # type: ignore[return-value]
