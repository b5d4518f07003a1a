"""Positive / negative masks of a cross-modal batch."""

from __future__ import annotations

import torch


def label_masks(
    row_labels: torch.Tensor, col_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positives share the label, negatives do not: (rows, cols) bool masks."""
    pos = row_labels[:, None] == col_labels[None, :]
    return pos, ~pos


def pair_masks(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Only the paired item (the diagonal) is positive: VSE-style instance matching."""
    pos = torch.eye(n, dtype=torch.bool, device=device)
    return pos, ~pos
