"""The modality discriminator: tells image embeddings (1) from text embeddings (0)."""

from __future__ import annotations

import torch
from torch import nn


class ModalityDiscriminator(nn.Module):
    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(dim // 2, 2)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden // 2 or 1),
            nn.ReLU(),
            nn.Linear(hidden // 2 or 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of `x` being an image embedding, shape (n,)."""
        return self.net(x).squeeze(-1)
