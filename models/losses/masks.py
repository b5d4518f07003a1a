"""Positive / negative masks of a cross-modal batch."""

from __future__ import annotations

import torch


def label_masks(
    row_labels: torch.Tensor, col_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positives share the label, negatives do not: (rows, cols) bool masks."""
    pos = row_labels[:, None] == col_labels[None, :]
    return pos, ~pos


def pair_masks(
    n: int, device: torch.device, matches: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance matching (VSE-style): positive where the text describes the image, only the
    paired item (the diagonal) unless `matches` says which texts describe which images."""
    pos = torch.eye(n, dtype=torch.bool, device=device) if matches is None else matches
    return pos, ~pos
