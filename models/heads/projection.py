"""Projectors from backbone features into the shared space."""

from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear: a two-layer MLP (one layer if hidden=0).

    The input LayerNorm puts 1280-d image and 384-d text features on one scale.
    """

    def __init__(self, dim_in: int, dim_out: int, hidden: int = 512, dropout: float = 0.2) -> None:
        super().__init__()
        if hidden:
            self.net: nn.Module = nn.Sequential(
                nn.LayerNorm(dim_in),
                nn.Dropout(dropout),
                nn.Linear(dim_in, hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, dim_out),
            )
        else:
            self.net = nn.Sequential(
                nn.LayerNorm(dim_in), nn.Dropout(dropout), nn.Linear(dim_in, dim_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
