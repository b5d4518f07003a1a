"""Similarity preservation: a learned embedding keeps the neighbourhoods of a frozen one.

For each row of a batch, the softmax over the other rows' similarities (temperature tau) in the
learned space should match the one the reference (e.g. the text backbone's sentence vectors)
gives: loss = mean over rows of KL(reference || learned). Relational, so the learned space may
rescale and tighten its classes while a text never trained on (an unseen keyword) still lands
near the captions the backbone finds close to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_preservation(
    learned: torch.Tensor, reference: torch.Tensor, temperature: float = 0.05
) -> torch.Tensor:
    """learned: unit rows (n, d); reference: rows (n, d_ref), normalised here."""
    n = len(learned)
    others = ~torch.eye(n, dtype=torch.bool, device=learned.device)
    ref = F.normalize(reference.float(), dim=-1)
    target = ((ref @ ref.T)[others].view(n, n - 1) / temperature).softmax(dim=1)
    log_p = ((learned @ learned.T)[others].view(n, n - 1) / temperature).log_softmax(dim=1)
    return F.kl_div(log_p, target, reduction="batchmean")
