"""`dhaml`: cross-modal deep hierarchical adversarial metric learning (thesis method 1, DHMML).

Per modality: a trunk, then one sub-network per label level, coarse to fine; each level's block
is residual on the coarser level's representation (the fine level refines the coarse one) and
ends in that level's embedding. Per level:
- a classifier SHARED by both modalities (the multi-layer classification mechanism), a cosine
  classifier so class prototypes live in the retrieval geometry;
- a label-aware cross-modal metric loss (every cross-modal pair sharing the level's label is
  positive): contrastive (default), the polynomial loss or the triplet loss;
- modality adversarial learning: a discriminator per level behind gradient reversal, its
  coefficient ramped by grl_lambda(progress).
Retrieval uses the finest level's embedding (`retrieval: fine`) or the weighted concatenation of
all levels (`retrieval: concat`); the benchmark reports both.

Below the finest label the hierarchy can go one level further, to the item itself
(`instance_level: true`): one more residual block and head per modality, trained by the
instance term alone (each image against the texts that describe it, from pairs, no label),
with no classifier. Label levels alone collapse a subgroup to one point, so the query "cat"
cannot tell the cat from the pig; the instance level keeps that apart without bending the
label levels. Retrieval then concatenates the finest label level and the instance level
(weight `instance_retrieval_weight` on the latter).

On a corpus without labels (zero label levels) the instance level is all there is: one block
and head per modality trained by the instance term, no classifier, no discriminator, and
retrieval is the instance embedding.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from models.config import TrainConfig
from models.heads.classifiers import LevelClassifiers
from models.heads.discriminator import ModalityDiscriminator
from models.heads.gradient_reversal import GradientReversal, grl_lambda
from models.losses.adversarial import modality_adversarial_loss
from models.losses.classification import level_classification
from models.losses.contrastive import contrastive_loss, paired_contrastive_loss
from models.losses.geometry import similarity_preservation
from models.losses.masks import label_masks
from models.losses.polynomial import polynomial_loss
from models.losses.triplet import triplet_loss
from models.methods.base import Features, Method, MethodDims

Metric = Literal["contrastive", "polynomial", "triplet"]


class DHAMLOptions(BaseModel):
    @model_validator(mode="after")
    def _instance_level_is_trained(self) -> DHAMLOptions:
        if self.instance_level and self.instance_weight <= 0:
            raise ValueError("instance_level needs instance_weight > 0 (nothing else trains it)")
        return self

    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden: int = Field(1024, ge=2)
    dropout: float = Field(0.2, ge=0, lt=1)
    metric: Metric = "contrastive"
    temperature: float = Field(0.1, gt=0)
    metric_weight: float = Field(1.0, ge=0)
    classify_weight: float = Field(1.0, ge=0)
    classifier: Literal["cosine", "linear"] = "cosine"
    classifier_scale: float = Field(16.0, gt=0)  # cosine classifier only
    adv_weight: float = Field(0.1, ge=0)
    retrieval: Literal["fine", "concat"] = "fine"
    concat_coarse_weight: float = Field(0.5, ge=0)  # weight of each coarser level in concat
    # Instance term: the paired item must also win against same-label items (paired InfoNCE on
    # the finest level), so "cat" finds the cat and not any mammal of the same subgroup.
    instance_weight: float = Field(0.0, ge=0)
    instance_temperature: float | None = Field(None, gt=0)  # None: `temperature`
    instance_level: bool = False  # the instance term on a level of its own (module doc)
    instance_retrieval_weight: float = Field(1.0, ge=0)
    # the text side of the instance level: a learned head, or the text backbone's own vector
    instance_text: Literal["learned", "backbone"] = "learned"
    # Text geometry: the finest label level's texts keep the text backbone's in-batch
    # neighbourhoods (models.losses.geometry), so an unseen query word lands in the subgroup of
    # the captions it is close to rather than wherever the tower happens to send it.
    text_geometry_weight: float = Field(0.0, ge=0)
    text_geometry_temperature: float = Field(0.05, gt=0)


def metric_loss(
    kind: Metric, sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, temperature: float
) -> torch.Tensor:
    if kind == "contrastive":
        return contrastive_loss(sim, pos, neg, temperature)
    if kind == "polynomial":
        return polynomial_loss(sim, pos, neg)
    return triplet_loss(sim, pos, neg)


class HierarchicalTower(nn.Module):
    """One modality: trunk, then a residual block and an embedding head per level."""

    def __init__(
        self,
        dim_in: int,
        hidden: int,
        dim_out: int,
        levels: int,
        dropout: float,
        last_out: int | None = None,
    ) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.LayerNorm(dim_in), nn.Dropout(dropout), nn.Linear(dim_in, hidden), nn.GELU()
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(hidden), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU()
            )
            for _ in range(levels)
        )
        outs = [dim_out] * (levels - 1) + [last_out or dim_out]
        self.heads = nn.ModuleList(nn.Linear(hidden, out) for out in outs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, out = self.trunk(x), []
        for block, head in zip(self.blocks, self.heads, strict=True):
            h = h + block(h)
            out.append(F.normalize(head(h), dim=-1))
        return out


class DHAML(Method):
    Options = DHAMLOptions
    pairs_only = "with options.instance_weight > 0, as in configs/default.yaml"

    @classmethod
    def learns_from_pairs(cls, options: BaseModel) -> bool:
        return isinstance(options, DHAMLOptions) and options.instance_weight > 0

    def __init__(self, config: TrainConfig, dims: MethodDims) -> None:
        super().__init__()
        self.opts = o = DHAMLOptions(**config.options)
        d, levels = config.embed_dim, len(dims.classes)
        # without label levels the instance term has no finest level to share: its own level
        self.instance_level = o.instance_level or levels == 0
        # a frozen text instance level is the text backbone's own vector: the image side learns
        # to land near its captions there, and a query word never trained on keeps the place
        # the text backbone gives it (as in a search over captions)
        frozen_text = self.instance_level and o.instance_text == "backbone"
        self.image_tower = HierarchicalTower(
            dims.image, o.hidden, d, levels + int(self.instance_level), o.dropout,
            last_out=dims.text if frozen_text else None,
        )
        text_blocks = levels + int(self.instance_level and not frozen_text)
        # none when the text side is the backbone's vector alone (a label-free corpus)
        self.text_tower = (
            HierarchicalTower(dims.text, o.hidden, d, text_blocks, o.dropout)
            if text_blocks else None
        )
        self.frozen_text_instance = frozen_text
        self.classifiers = LevelClassifiers(
            [d] * levels, dims.classes, o.classifier_scale, o.classifier == "cosine"
        )
        self.grl = GradientReversal()
        self.discriminators = nn.ModuleList(ModalityDiscriminator(d) for _ in range(levels))
        self.retrieval = o.retrieval  # a plain attribute: the benchmark evaluates both
        self.instance_retrieval_weight = o.instance_retrieval_weight  # likewise

    def _retrieval_embedding(self, per_level: list[torch.Tensor]) -> torch.Tensor:
        if self.instance_level:
            *per_level, instance = per_level
            if not per_level:  # no label level: the instance level alone
                return instance
            w = self.instance_retrieval_weight
            label = self._label_embedding(per_level)
            return F.normalize(torch.cat([label, w * instance], dim=-1), dim=-1)
        return self._label_embedding(per_level)

    def _label_embedding(self, per_level: list[torch.Tensor]) -> torch.Tensor:
        if self.retrieval == "fine":
            return per_level[-1]
        weights = [self.opts.concat_coarse_weight] * (len(per_level) - 1) + [1.0]
        return F.normalize(
            torch.cat([w * e for w, e in zip(weights, per_level, strict=True)], dim=-1), dim=-1
        )

    def embed_images(self, feats: Features) -> torch.Tensor:
        return self._retrieval_embedding(self.image_tower(feats["pooled"]))

    def embed_texts(self, feats: Features) -> torch.Tensor:
        return self._retrieval_embedding(self._text_levels(feats))

    def _text_levels(self, feats: Features) -> list[torch.Tensor]:
        levels = self.text_tower(feats["pooled"]) if self.text_tower is not None else []
        if self.frozen_text_instance:
            levels.append(F.normalize(feats["pooled"].float(), dim=-1))
        return levels

    def losses(
        self,
        images: Features,
        texts: Features,
        labels: list[torch.Tensor],
        progress: float,
        matches: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        o = self.opts
        img_levels, txt_levels = (
            self.image_tower(images["pooled"]),
            self._text_levels(texts),
        )
        img_instance, txt_instance = img_levels[-1], txt_levels[-1]
        if self.instance_level:
            img_levels, txt_levels = img_levels[:-1], txt_levels[:-1]
        metric: torch.Tensor | float = 0.0
        adversary: torch.Tensor | float = 0.0
        coeff = grl_lambda(progress)
        for level, (img, txt) in enumerate(zip(img_levels, txt_levels, strict=True)):
            pos, neg = label_masks(labels[level], labels[level])
            metric = metric + metric_loss(o.metric, img @ txt.T, pos, neg, o.temperature)
            if o.adv_weight > 0:
                adversary = adversary + modality_adversarial_loss(
                    self.discriminators[level], self.grl(img, coeff), self.grl(txt, coeff)
                )
        if o.instance_weight > 0:
            metric = metric + o.instance_weight * paired_contrastive_loss(
                img_instance, txt_instance, o.instance_temperature or o.temperature, matches
            )
        out = {"metric": o.metric_weight * metric}
        if not labels:  # a label-free corpus: the instance term is the whole objective
            return out  # type: ignore[return-value]
        classify = level_classification(
            self.classifiers(img_levels), labels
        ) + level_classification(self.classifiers(txt_levels), labels)
        out["classify"] = o.classify_weight * classify
        if o.text_geometry_weight > 0:
            out["text_geometry"] = o.text_geometry_weight * similarity_preservation(
                txt_levels[-1], texts["pooled"], o.text_geometry_temperature)
        if o.adv_weight > 0:
            out["adversary"] = o.adv_weight * adversary
        return out  # type: ignore[return-value]
