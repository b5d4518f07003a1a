"""What every method offers the trainer (losses) and the encoder (embeddings)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

Features = dict[str, torch.Tensor]  # backbone outputs: pooled, regions | pooled, tokens, mask


@dataclass(frozen=True)
class MethodDims:
    image: int  # pooled image feature size
    text: int  # pooled text feature size
    classes: tuple[int, ...]  # number of labels at each level, coarse to fine


class Method(nn.Module):
    """Embeds each modality into the shared space (unit rows) and names its training losses."""

    def embed_images(self, feats: Features) -> torch.Tensor:
        raise NotImplementedError

    def embed_texts(self, feats: Features) -> torch.Tensor:
        raise NotImplementedError

    def losses(
        self, images: Features, texts: Features, labels: list[torch.Tensor], progress: float
    ) -> dict[str, torch.Tensor]:
        """Named loss terms of one batch of pairs; the trainer sums them in one place.

        labels[level] holds each pair's class at that level; progress runs 0 -> 1 over training.
        """
        raise NotImplementedError
