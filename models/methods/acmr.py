"""`acmr`: Adversarial Cross-Modal Retrieval (Wang et al., ACM MM 2017).

Feature projectors per modality; a label classifier shared by both modalities on the shared
space (label prediction); triplet constraints across modalities (label-aware, hardest
negative); a modality classifier behind gradient reversal, so the projectors play the min-max
of the paper (its public TensorFlow demo never lets that gradient reach the projectors).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from models.config import TrainConfig
from models.heads.classifiers import LevelClassifiers
from models.heads.discriminator import ModalityDiscriminator
from models.heads.gradient_reversal import GradientReversal, grl_lambda
from models.heads.projection import Projector
from models.losses.adversarial import modality_adversarial_loss
from models.losses.classification import level_classification
from models.losses.masks import label_masks
from models.losses.triplet import triplet_loss
from models.methods.base import Features, MethodDims, PooledProjection


class ACMROptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden: int = Field(1024, ge=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    margin: float = Field(0.2, gt=0)
    triplet_weight: float = Field(1.0, ge=0)
    classify_weight: float = Field(1.0, ge=0)
    adv_weight: float = Field(0.1, ge=0)


class ACMR(PooledProjection):
    Options = ACMROptions

    def __init__(self, config: TrainConfig, dims: MethodDims) -> None:
        super().__init__()
        self.opts = o = ACMROptions(**config.options)
        d = config.embed_dim
        self.image_proj = Projector(dims.image, d, o.hidden, o.dropout)
        self.text_proj = Projector(dims.text, d, o.hidden, o.dropout)
        self.classifier = LevelClassifiers([d], [dims.classes[-1]], cosine=False)
        self.grl = GradientReversal()
        self.discriminator = ModalityDiscriminator(d)

    def losses(
        self,
        images: Features,
        texts: Features,
        labels: list[torch.Tensor],
        progress: float,
        matches: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        o, fine = self.opts, labels[-1]
        img, txt = self.embed_images(images), self.embed_texts(texts)
        pos, neg = label_masks(fine, fine)
        out = {
            "triplet": o.triplet_weight * triplet_loss(img @ txt.T, pos, neg, o.margin),
            "classify": o.classify_weight
            * (
                level_classification(self.classifier([img]), [fine])
                + level_classification(self.classifier([txt]), [fine])
            ),
        }
        if o.adv_weight > 0:
            coeff = grl_lambda(progress)
            out["adversary"] = o.adv_weight * modality_adversarial_loss(
                self.discriminator, self.grl(img, coeff), self.grl(txt, coeff)
            )
        return out
