"""The three terms of DSCMR (Zhen et al., CVPR 2019).

label_space: mean L2 distance of each modality's label prediction to its one-hot label (the
norm, not its square, as in the authors' released code);
likelihood: negative log-likelihood of the label-similarity matrix under theta = 0.5 cos
(image-image, image-text and text-text); paired distance: Frobenius norm of U - V per pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_space_loss(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    onehot = F.one_hot(labels, pred.shape[1]).to(pred)
    return ((pred - onehot) ** 2).sum(dim=1).sqrt().mean()


def _likelihood(a: torch.Tensor, b: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    theta = 0.5 * F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    return (F.softplus(theta) - same.to(theta) * theta).mean()


def likelihood_loss(
    images: torch.Tensor, texts: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    same = labels[:, None] == labels[None, :]
    return (
        _likelihood(images, texts, same)
        + _likelihood(images, images, same)
        + _likelihood(texts, texts, same)
    )


def paired_distance_loss(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    return (images - texts).pow(2).sum(dim=1).sqrt().mean()
