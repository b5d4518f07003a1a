"""Label classifiers on the shared space.

`CosineClassifier` scores unit embeddings against unit class prototypes (scaled cosine), so
the class structure it teaches lives in the same geometry retrieval ranks by. One classifier
is shared by both modalities: that is what ties the modalities to one label space.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class CosineClassifier(nn.Module):
    def __init__(self, dim: int, classes: int, scale: float = 16.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim) * dim**-0.5)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=-1).T


class LevelClassifiers(nn.Module):
    """One classifier per label level (coarse to fine), each on that level's embedding."""

    def __init__(
        self, dims: Sequence[int], classes: Sequence[int], scale: float = 16.0, cosine: bool = True
    ) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            CosineClassifier(d, c, scale) if cosine else nn.Linear(d, c)
            for d, c in zip(dims, classes, strict=True)
        )

    def forward(self, per_level: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [head(x) for head, x in zip(self.heads, per_level, strict=True)]
