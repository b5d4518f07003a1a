"""`triplet`: the VSE++ baseline, the loss the polynomial loss replaces.

Two-layer projectors per modality and the hardest-negative triplet ranking loss (margin 0.2)
on the cross-modal similarity matrix. `label_aware` (default) counts every pair that shares the
finest label as positive, which is fair to this baseline on a labelled corpus; false gives the
original instance-only VSE++ setting.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from models.config import TrainConfig
from models.heads.projection import Projector
from models.losses.masks import label_masks, pair_masks
from models.losses.triplet import triplet_loss
from models.methods.base import Features, MethodDims, PooledProjection


class TripletOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden: int = Field(1024, ge=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    margin: float = Field(0.2, gt=0)
    label_aware: bool = True
    hardest: bool = True


class TripletBaseline(PooledProjection):
    Options = TripletOptions
    pairs_only = "with options.label_aware: false"

    @classmethod
    def learns_from_pairs(cls, options: BaseModel) -> bool:
        return isinstance(options, TripletOptions) and not options.label_aware

    def __init__(self, config: TrainConfig, dims: MethodDims) -> None:
        super().__init__()
        self.opts = TripletOptions(**config.options)
        o = self.opts
        self.image_proj = Projector(dims.image, config.embed_dim, o.hidden, o.dropout)
        self.text_proj = Projector(dims.text, config.embed_dim, o.hidden, o.dropout)

    def losses(
        self,
        images: Features,
        texts: Features,
        labels: list[torch.Tensor],
        progress: float,
        matches: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        img, txt = self.embed_images(images), self.embed_texts(texts)
        if self.opts.label_aware:
            pos, neg = label_masks(labels[-1], labels[-1])
        else:
            pos, neg = pair_masks(len(img), img.device, matches)
        return {"triplet": triplet_loss(img @ txt.T, pos, neg, self.opts.margin, self.opts.hardest)}
