"""`linear`: the stand-in until the thesis methods land, a supervised linear projection.

One linear map per modality into the shared space, a classifier on the finest level shared by
both modalities, and a symmetric contrastive loss on the pairs. Simple and strong enough to
make the demo search meaningful; it is no method of the thesis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.config import TrainConfig
from models.methods.base import Features, MethodDims, PooledProjection

TEMPERATURE = 0.07


class LinearProjection(PooledProjection):
    def __init__(self, config: TrainConfig, dims: MethodDims) -> None:
        super().__init__()
        self.image_proj = nn.Linear(dims.image, config.embed_dim)
        self.text_proj = nn.Linear(dims.text, config.embed_dim)
        self.classifier = nn.Linear(config.embed_dim, dims.classes[-1])

    def losses(
        self,
        images: Features,
        texts: Features,
        labels: list[torch.Tensor],
        progress: float,
        matches: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        img, txt = self.embed_images(images), self.embed_texts(texts)
        fine = labels[-1]
        logits = img @ txt.T / TEMPERATURE
        target = torch.arange(len(img), device=img.device)
        return {
            "classify": F.cross_entropy(self.classifier(img), fine)
            + F.cross_entropy(self.classifier(txt), fine),
            "pairs": (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2,
        }
