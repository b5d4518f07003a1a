"""Backbone features of a list of corpus items, as the trainer, evaluator and indexer see them.

`Backbones` holds the frozen extractors chosen by a config; `FeatureSet` is what they give for
a list of items (read through the feature cache, so each item is computed once per backbone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.backbones.cache import FeatureCache
from models.backbones.extract import image_features, text_features
from models.backbones.image import DEFAULT_IMAGE_BACKBONE, EfficientNetLite
from models.backbones.text import CharNgram, MiniLM, TextBackbone
from models.config import TEXT_BACKBONES
from models.data.corpus import Corpus, Item


@dataclass
class FeatureSet:
    image_pooled: np.ndarray  # float32 (n, 1280)
    image_regions: np.ndarray  # float16 (n, R, 1280)
    text_pooled: np.ndarray  # float32 (n, d_text)
    text_tokens: np.ndarray  # float16 (n, T, d_text)
    text_mask: np.ndarray  # bool (n, T)

    def __len__(self) -> int:
        return len(self.image_pooled)

    def subset(self, rows: np.ndarray | Sequence[int]) -> FeatureSet:
        rows = np.asarray(rows)
        return FeatureSet(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))


class Backbones:
    """The frozen image and text extractors of one run, built once at the edge."""

    def __init__(self, image: EfficientNetLite, text: TextBackbone) -> None:
        self.image = image
        self.text = text

    @classmethod
    def build(
        cls, text_backbone: str, device: torch.device, text_state: dict | None = None,
        fit_texts: Sequence[str] | None = None, image_backbone: str = DEFAULT_IMAGE_BACKBONE,
    ) -> Backbones:
        """`char-ngram` is fitted on `fit_texts` (the train split) or restored from `text_state`."""
        if text_backbone == "minilm":
            text: TextBackbone = MiniLM(device)
        elif text_backbone == "char-ngram":
            if text_state is not None:
                text = CharNgram.from_state(text_state)
            elif fit_texts is not None:
                text = CharNgram.fit(list(fit_texts))
            else:
                raise ValueError("char-ngram needs the train texts to fit on, or a saved state")
        else:
            raise ValueError(f"unknown text backbone {text_backbone!r}; known: {TEXT_BACKBONES}")
        return cls(EfficientNetLite(image_backbone, device), text)

    def text_state(self) -> dict | None:
        return self.text.state() if isinstance(self.text, CharNgram) else None

    def features(
        self, corpus: Corpus, items: Sequence[Item], cache: FeatureCache, progress: bool = True
    ) -> FeatureSet:
        images = image_features([corpus.image_path(i) for i in items], self.image, cache,
                                progress=progress)
        texts = text_features([i.text for i in items], self.text, cache, progress=progress)
        return FeatureSet(images.pooled, images.regions, texts.pooled, texts.tokens, texts.mask)
