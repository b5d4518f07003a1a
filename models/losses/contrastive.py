"""Label-aware cross-modal contrastive loss (supervised InfoNCE across modalities).

For each anchor, the softmax over all candidates (temperature tau) should put its mass on the
candidates that share the anchor's label: loss = -mean over positives of log p(positive).
"""

from __future__ import annotations

import torch

from models.losses.masks import pair_masks


def _one_side(sim: torch.Tensor, pos: torch.Tensor, temperature: float) -> torch.Tensor:
    log_p = torch.log_softmax(sim / temperature, dim=1)
    per_anchor = -(log_p * pos).sum(dim=1) / pos.sum(dim=1).clamp_min(1)
    return per_anchor[pos.any(dim=1)].mean()


def contrastive_loss(
    sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    del neg  # every non-positive is a negative through the softmax denominator
    return (_one_side(sim, pos, temperature) + _one_side(sim.T, pos.T, temperature)) / 2


def paired_contrastive_loss(
    images: torch.Tensor,
    texts: torch.Tensor,
    temperature: float = 0.1,
    matches: torch.Tensor | None = None,
) -> torch.Tensor:
    """Instance-level InfoNCE (CLIP's loss, from pairs alone, no labels): each image's
    positives are the texts that describe it (its own pair, or `matches`), every other text
    is a negative, same-label ones included. Label-level losses alone collapse a class to one
    point, so the query "cat" would rank every mammal alike; this term keeps the pair on top."""
    pos, neg = pair_masks(len(images), images.device, matches)
    return contrastive_loss(images @ texts.T, pos, neg, temperature)
