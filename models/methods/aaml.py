"""`aaml`: cross-modal deep adversarial metric learning with attention (thesis method 2).

Per modality a pooled-feature projector gives the global embedding. With `attention` on,
self-attention over the modality's tokens (image regions of the 7x7 map, reduced once by a
frozen PCA fitted on the train part; text word tokens) gives a summary pooled by the global
vector's query, added to the global embedding through a gate that starts at zero (ReZero):
attention can only refine what the pooled features already give. Cross-attention between the
contextualised words and regions (SCAN, both directions) scores a (text, image) pair; it is
trained on a sub-batch with the same metric loss, cannot be precomputed into an index, and is
offered to the service as a re-ranker of the top candidates (`pair_scores`).
Losses: the self-similarity polynomial loss on the cross-modal similarity matrix with every
same-label pair positive (`loss: triplet` for the ablation), a cosine label classifier shared
by both modalities, and modality adversarial learning behind gradient reversal.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from models.attention.blocks import SelfAttentionBlock, cross_attention_scores
from models.config import TrainConfig
from models.heads.classifiers import LevelClassifiers
from models.heads.discriminator import ModalityDiscriminator
from models.heads.gradient_reversal import GradientReversal, grl_lambda
from models.heads.projection import Projector
from models.losses.adversarial import modality_adversarial_loss
from models.losses.classification import level_classification
from models.losses.contrastive import paired_contrastive_loss
from models.losses.masks import label_masks
from models.losses.polynomial import polynomial_loss
from models.losses.triplet import triplet_loss
from models.methods.base import Features, Method, MethodDims

PCA_SAMPLE = 4_000  # region vectors used to fit the frozen reduction


class AAMLOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden: int = Field(1024, ge=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    loss: Literal["polynomial", "triplet"] = "polynomial"
    # only the hardest (informative) negative: the polynomial loss's released code, VSE++ for
    # the triplet loss; False weights all informative negatives (paper) / averages all triplets
    hardest: bool = False
    metric_weight: float = Field(1.0, ge=0)
    classify_weight: float = Field(1.0, ge=0)
    classifier: Literal["cosine", "linear"] = "cosine"
    classifier_scale: float = Field(16.0, gt=0)  # cosine classifier only
    adv_weight: float = Field(0.1, ge=0)
    attention: bool = True
    attn_dim: int = Field(128, ge=8)
    heads: int = Field(2, ge=1)
    region_dim: int = Field(256, ge=8)
    cross_weight: float = Field(0.5, ge=0)
    cross_batch: int = Field(32, ge=2)
    # Instance term (paired InfoNCE, temperature 0.1): the pair must beat same-label items too.
    instance_weight: float = Field(0.0, ge=0)


class AAML(Method):
    Options = AAMLOptions
    # buffers (register_buffer, with attention only), declared for the type checker
    region_mean: torch.Tensor
    region_basis: torch.Tensor

    def __init__(self, config: TrainConfig, dims: MethodDims) -> None:
        super().__init__()
        self.opts = o = AAMLOptions(**config.options)
        d = config.embed_dim
        self.image_proj = Projector(dims.image, d, o.hidden, o.dropout)
        self.text_proj = Projector(dims.text, d, o.hidden, o.dropout)
        self.classifier = LevelClassifiers(
            [d], [dims.classes[-1]], o.classifier_scale, o.classifier == "cosine"
        )
        self.grl = GradientReversal()
        self.discriminator = ModalityDiscriminator(d)
        if o.attention:
            self.register_buffer("region_mean", torch.zeros(dims.image))
            self.register_buffer("region_basis", torch.eye(dims.image, o.region_dim))
            self.image_attn = SelfAttentionBlock(o.region_dim, o.attn_dim, d, o.heads, 0.1)
            self.text_attn = SelfAttentionBlock(dims.text, o.attn_dim, d, o.heads, 0.1)
            self.image_out = nn.Linear(o.attn_dim, d)
            self.text_out = nn.Linear(o.attn_dim, d)
            self.gate = nn.Parameter(torch.zeros(2))  # image, text

    @property
    def reads_tokens(self) -> bool:
        return self.opts.attention

    @property
    def can_rerank(self) -> bool:
        return self.opts.attention

    def prepare(self, images: Features, texts: Features, labels: list[torch.Tensor]) -> None:
        if not self.opts.attention:
            return
        regions = images["regions"].reshape(-1, images["regions"].shape[-1])
        generator = torch.Generator().manual_seed(0)
        rows = torch.randperm(len(regions), generator=generator)[:PCA_SAMPLE].to(regions.device)
        sample = regions[rows].float()
        mean = sample.mean(0)
        centred = sample - mean
        cov = (centred.T @ centred / len(sample)).double()
        cov += 1e-6 * torch.eye(
            len(cov), dtype=cov.dtype, device=cov.device
        )  # few samples: rank-deficient
        _, vectors = torch.linalg.eigh(cov)  # ascending
        vectors = vectors.float()
        self.region_mean.copy_(mean)
        self.region_basis.copy_(vectors.flip(1)[:, : self.opts.region_dim])

    def transform_images(self, feats: Features) -> Features:
        """Regions reduced by the frozen PCA (float16, like the cached regions)."""
        if not self.opts.attention:
            return {"pooled": feats["pooled"]}
        regions = (feats["regions"].float() - self.region_mean) @ self.region_basis
        return {"pooled": feats["pooled"], "regions": regions.half()}

    # -- embeddings (of transformed features) ------------------------------------------------
    def _image(self, feats: Features) -> tuple[torch.Tensor, torch.Tensor | None]:
        glob = self.image_proj(feats["pooled"])
        if not self.opts.attention:
            return F.normalize(glob, dim=-1), None
        tokens, summary = self.image_attn(feats["regions"].float(), None, glob)
        emb = F.normalize(glob, dim=-1) + self.gate[0] * F.normalize(
            self.image_out(summary), dim=-1
        )
        return F.normalize(emb, dim=-1), tokens

    def _text(self, feats: Features) -> tuple[torch.Tensor, torch.Tensor | None]:
        glob = self.text_proj(feats["pooled"])
        if not self.opts.attention:
            return F.normalize(glob, dim=-1), None
        mask = feats["mask"].clone()
        mask[:, 0] |= ~mask.any(dim=1)  # an empty text attends to its first (zero) token
        tokens, summary = self.text_attn(feats["tokens"].float(), mask, glob)
        emb = F.normalize(glob, dim=-1) + self.gate[1] * F.normalize(self.text_out(summary), dim=-1)
        return F.normalize(emb, dim=-1), tokens

    def embed_images(self, feats: Features) -> torch.Tensor:
        return self._image(feats)[0]

    def embed_texts(self, feats: Features) -> torch.Tensor:
        return self._text(feats)[0]

    # -- training ----------------------------------------------------------------------------
    def _metric(self, sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        if self.opts.loss == "polynomial":
            return polynomial_loss(sim, pos, neg, hardest=self.opts.hardest)
        return triplet_loss(sim, pos, neg, hardest=self.opts.hardest)

    def losses(
        self,
        images: Features,
        texts: Features,
        labels: list[torch.Tensor],
        progress: float,
        matches: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        o, fine = self.opts, labels[-1]
        img, img_tokens = self._image(images)
        txt, txt_tokens = self._text(texts)
        pos, neg = label_masks(fine, fine)
        out = {
            "metric": o.metric_weight * self._metric(img @ txt.T, pos, neg),
            "classify": o.classify_weight
            * (
                level_classification(self.classifier([img]), [fine])
                + level_classification(self.classifier([txt]), [fine])
            ),
        }
        if o.instance_weight > 0:
            out["instance"] = o.instance_weight * paired_contrastive_loss(img, txt, matches=matches)
        if o.adv_weight > 0:
            coeff = grl_lambda(progress)
            out["adversary"] = o.adv_weight * modality_adversarial_loss(
                self.discriminator, self.grl(img, coeff), self.grl(txt, coeff)
            )
        if o.attention and o.cross_weight > 0:
            assert txt_tokens is not None and img_tokens is not None  # attention makes tokens
            k = min(o.cross_batch, len(fine))
            cross = cross_attention_scores(txt_tokens[:k], self._mask(texts)[:k], img_tokens[:k]).T
            out["cross"] = o.cross_weight * self._metric(cross, pos[:k, :k], neg[:k, :k])
        return out

    @staticmethod
    def _mask(texts: Features) -> torch.Tensor:
        mask = texts["mask"].clone()
        mask[:, 0] |= ~mask.any(dim=1)
        return mask

    # -- re-ranking --------------------------------------------------------------------------
    def pair_scores(self, images: Features, texts: Features) -> torch.Tensor:
        """(n_images, n_texts): embedding cosine plus the cross-attention score."""
        if not self.opts.attention:
            raise ValueError("this aaml checkpoint was trained without attention; cannot re-rank")
        img, img_tokens = self._image(images)
        txt, txt_tokens = self._text(texts)
        assert txt_tokens is not None and img_tokens is not None  # attention makes tokens
        cross = cross_attention_scores(txt_tokens, self._mask(texts), img_tokens).T
        return img @ txt.T + cross
