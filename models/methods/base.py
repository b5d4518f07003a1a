"""What every method offers the trainer (losses) and the encoder (embeddings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn
from torch.nn import functional as F

Features = dict[str, torch.Tensor]  # backbone outputs: pooled, regions | pooled, tokens, mask


@dataclass(frozen=True)
class MethodDims:
    image: int  # pooled image feature size
    text: int  # pooled text feature size
    classes: tuple[int, ...]  # number of labels at each level used, coarse to fine


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Method(nn.Module):
    """Embeds each modality into the shared space (unit rows) and names its training losses.

    `Options` is the pydantic model of the method's `options:` block in the config (unknown
    keys rejected); `build_method` validates it before any work starts.
    """

    Options: ClassVar[type[BaseModel]] = NoOptions
    # What makes the method train on pairs alone (a corpus without labels), in words for the
    # error that lists them; empty for a method that always needs labels.
    pairs_only: ClassVar[str] = ""

    @classmethod
    def learns_from_pairs(cls, options: BaseModel) -> bool:
        """True when the method, with these options, needs no label (an instance-level
        objective on the pairs, or a closed form on them); such methods train on a label-free
        corpus, with zero label levels in `MethodDims.classes`."""
        return False

    def prepare(self, images: Features, texts: Features, labels: list[torch.Tensor]) -> None:
        """Called once with the whole train part before training (CCA fits here; PCA bases)."""

    def transform_images(self, feats: Features) -> Features:
        """Frozen, deterministic preprocessing of backbone features (aaml: PCA of the region
        map), applied once per split by the trainer and per request by the encoder, before
        `embed_images`; not learned, so it never needs recomputing during training."""
        return feats

    def transform_texts(self, feats: Features) -> Features:
        return feats

    @property
    def reads_tokens(self) -> bool:
        """True for methods whose text embedding reads token vectors, not only the pooled one;
        the encoder has the text backbone skip them for the others."""
        return False

    @property
    def can_rerank(self) -> bool:
        """True for methods with a cross-attention scorer (`pair_scores`) to re-rank a shortlist."""
        return False

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def embed_images(self, feats: Features) -> torch.Tensor:
        """Unit embeddings of images given `transform_images` of their backbone features."""
        raise NotImplementedError

    def embed_texts(self, feats: Features) -> torch.Tensor:
        raise NotImplementedError

    def losses(
        self,
        images: Features,
        texts: Features,
        labels: list[torch.Tensor],
        progress: float,
        matches: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Named loss terms of one batch of pairs; the trainer sums them in one place.

        labels[level] holds each pair's class at that level; progress runs 0 -> 1 over training.
        matches[i, j] is True when text j describes image i (a corpus with several captions per
        image, or one text shared by several images); None means the diagonal: each image is
        described by its own row's text only. Instance-level terms use it; label terms do not.
        """
        raise NotImplementedError

    def pair_scores(self, images: Features, texts: Features) -> torch.Tensor:
        """(n_images, n_texts) cross-attention scores, higher = better (re-rankers only)."""
        raise ValueError(f"{type(self).__name__} has no cross-attention scorer; cannot re-rank")


class PooledProjection(Method):
    """A method whose embeddings are its two projectors (`image_proj`, `text_proj`, set by the
    subclass) applied to the pooled backbone vectors: the baselines differ only in losses."""

    image_proj: nn.Module
    text_proj: nn.Module

    def embed_images(self, feats: Features) -> torch.Tensor:
        return F.normalize(self.image_proj(feats["pooled"]), dim=-1)

    def embed_texts(self, feats: Features) -> torch.Tensor:
        return F.normalize(self.text_proj(feats["pooled"]), dim=-1)
