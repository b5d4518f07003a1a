"""Modality adversarial loss: the discriminator's binary cross-entropy on both modalities.

The caller passes embeddings already behind a gradient-reversal layer, so one backward pass
trains the discriminator to separate the modalities and the feature networks to confuse it
(the min-max of ACMR and the thesis; ACMR's public demo never lets this gradient reach the
projectors, which this formulation avoids by construction).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def modality_adversarial_loss(
    discriminator: nn.Module, images: torch.Tensor, texts: torch.Tensor
) -> torch.Tensor:
    logits = discriminator(torch.cat([images, texts]))
    target = torch.cat([torch.ones(len(images)), torch.zeros(len(texts))]).to(logits)
    return F.binary_cross_entropy_with_logits(logits, target)
