"""`dscmr`: Deep Supervised Cross-Modal Retrieval (Zhen et al., CVPR 2019).

Two-layer networks per modality whose last layer is shared, and a linear label predictor shared
by both. Loss = label-space L2 to one-hot + alpha * common-space label-similarity likelihood
+ beta * paired-feature distance (alpha 1e-3, beta 1e-1 as in the paper). Non-adversarial.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from models.config import TrainConfig
from models.losses.dscmr import label_space_loss, likelihood_loss, paired_distance_loss
from models.methods.base import Features, Method, MethodDims


class DSCMROptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden: int = Field(1024, ge=2)
    dropout: float = Field(0.2, ge=0, lt=1)
    alpha: float = Field(1e-3, ge=0)
    beta: float = Field(1e-1, ge=0)


def _branch(dim_in: int, hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.LayerNorm(dim_in),
        nn.Dropout(dropout),
        nn.Linear(dim_in, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
    )


class DSCMR(Method):
    Options = DSCMROptions

    def __init__(self, config: TrainConfig, dims: MethodDims) -> None:
        super().__init__()
        self.opts = o = DSCMROptions(**config.options)
        self.image_net = _branch(dims.image, o.hidden, o.dropout)
        self.text_net = _branch(dims.text, o.hidden, o.dropout)
        self.shared = nn.Linear(o.hidden, config.embed_dim)  # the shared last layer
        self.predictor = nn.Linear(config.embed_dim, dims.classes[-1], bias=False)

    def _common(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return self.shared(net(x))

    def embed_images(self, feats: Features) -> torch.Tensor:
        return F.normalize(self._common(self.image_net, feats["pooled"]), dim=-1)

    def embed_texts(self, feats: Features) -> torch.Tensor:
        return F.normalize(self._common(self.text_net, feats["pooled"]), dim=-1)

    def losses(
        self,
        images: Features,
        texts: Features,
        labels: list[torch.Tensor],
        progress: float,
        matches: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        o, fine = self.opts, labels[-1]
        u = self._common(self.image_net, images["pooled"])
        v = self._common(self.text_net, texts["pooled"])
        return {
            "label_space": label_space_loss(self.predictor(u), fine)
            + label_space_loss(self.predictor(v), fine),
            "likelihood": o.alpha * likelihood_loss(u, v, fine),
            "paired": o.beta * paired_distance_loss(u, v),
        }
