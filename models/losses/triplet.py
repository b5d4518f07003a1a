"""Triplet ranking loss, VSE++ style (Faghri et al., 2018): hardest negative, margin 0.2.

Each positive (row anchor, column candidate) is hinged against the anchor's hardest negative,
in both directions. With `label_masks`, every cross-modal pair sharing the label is positive;
with `pair_masks`, only the paired item (the original VSE++ setting).
"""

from __future__ import annotations

import torch


def _one_side(
    sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float, hardest: bool
) -> torch.Tensor:
    if hardest:
        hard_neg = sim.masked_fill(~neg, float("-inf")).max(dim=1).values  # (rows,)
        hinge = (margin + hard_neg[:, None] - sim).clamp_min(0)
        hinge = torch.where(torch.isfinite(hard_neg)[:, None], hinge, torch.zeros_like(hinge))
        return (hinge * pos).sum() / pos.sum().clamp_min(1)
    # every (positive, negative) combination of an anchor, averaged
    hinge = (margin + sim[:, None, :] - sim[:, :, None]).clamp_min(0)  # [anchor, pos, neg]
    valid = pos[:, :, None] & neg[:, None, :]
    return (hinge * valid).sum() / valid.sum().clamp_min(1)


def triplet_loss(
    sim: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    margin: float = 0.2,
    hardest: bool = True,
) -> torch.Tensor:
    return (
        _one_side(sim, pos, neg, margin, hardest) + _one_side(sim.T, pos.T, neg.T, margin, hardest)
    ) / 2
