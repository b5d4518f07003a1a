"""The self-similarity polynomial loss (Wei et al., "Universal Weighting Metric Learning for
Cross-Modal Matching", CVPR 2020 / TPAMI 2022).

For each anchor (each row, then each column): positive term max(0, a2 s^2 + a1 s + a0) for each
positive s; negative term max(0, b2 s^2 + b1 s + b0) for the informative negatives, those with
s + margin > the anchor's smallest positive. The released code keeps only the hardest
informative negative (`hardest=True`); the paper weights all informative ones (default).
Sum over anchors / batch size.
"""

from __future__ import annotations

import torch

POS = (0.2, -0.7, 0.5)  # a2, a1, a0
NEG = (0.9, -0.4, 0.03)  # b2, b1, b0
MARGIN = 0.2


def _poly(s: torch.Tensor, coeffs: tuple[float, float, float]) -> torch.Tensor:
    a2, a1, a0 = coeffs
    return (a2 * s * s + a1 * s + a0).clamp_min(0)


def _one_side(
    sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, hardest: bool
) -> torch.Tensor:
    has_pos = pos.any(dim=1)
    pos_term = (_poly(sim, POS) * pos).sum(dim=1)
    min_pos = sim.masked_fill(~pos, float("inf")).min(dim=1).values
    informative = neg & (sim + MARGIN > min_pos[:, None])
    neg_values = _poly(sim, NEG) * informative
    neg_term = neg_values.max(dim=1).values if hardest else neg_values.sum(dim=1)
    return ((pos_term + neg_term) * has_pos).sum()


def polynomial_loss(
    sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, hardest: bool = False
) -> torch.Tensor:
    """Both directions (rows as anchors, then columns), divided by the batch size."""
    total = _one_side(sim, pos, neg, hardest) + _one_side(sim.T, pos.T, neg.T, hardest)
    return total / sim.shape[0]
