"""The re-index job's embedders: a checkpoint as a picklable recipe (`EncoderSpec`) and what it
builds (`CheckpointEmbedder`: texts and image files -> unit vectors).

They satisfy the `Embedder` / `EmbedderSpec` protocols of index.engines, so the index layer runs
them (in this process or on Ray actors) without importing torch; the torch side lives here,
beside `Encoder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.backbones.cache import FeatureCache
from models.backbones.extract import image_features, text_features
from models.data.images import open_image
from models.inference import Encoder

MODALITIES = ("image", "text")


@dataclass(frozen=True)
class EncoderSpec:
    """A checkpoint (and optionally a backbone feature cache) as a picklable recipe."""

    checkpoint: Path
    cache_dir: Path | None = None

    def build(self, device: str = "cpu", threads: int | None = None) -> CheckpointEmbedder:
        return CheckpointEmbedder(Encoder.load(self.checkpoint, device, threads), self.cache_dir)


class CheckpointEmbedder:
    """Texts and image files -> unit vectors. Without a cache: exactly what the local build
    job does (Encoder.encode_texts, open_image + Encoder.encode_images). With one: backbone
    features read through (and added to) the feature cache, then the checkpoint's heads."""

    def __init__(self, encoder: Encoder, cache_dir: Path | None) -> None:
        self.encoder = encoder
        self.cache_dir = cache_dir

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    def embed(self, modality: str, payloads: Sequence[str]) -> np.ndarray:
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; known: {MODALITIES}")
        if not payloads:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.cache_dir is not None:
            return self._cached(modality, payloads)
        if modality == "text":
            return _f32(self.encoder.encode_texts(list(payloads)))
        out = np.full((len(payloads), self.dim), np.nan, dtype=np.float32)
        decoded, rows = [], []
        for row, path in enumerate(payloads):
            try:
                decoded.append(open_image(path))
                rows.append(row)
            except (ValueError, OSError):
                continue  # stays NaN: left out by the job, as the local engine does
        if decoded:
            out[rows] = self.encoder.encode_images(decoded)
        return out

    def _cached(self, modality: str, payloads: Sequence[str]) -> np.ndarray:
        assert self.cache_dir is not None
        enc, cache = self.encoder, FeatureCache(self.cache_dir)
        if modality == "text":
            texts = text_features(list(payloads), enc.backbones.text, cache, progress=False)
            return _f32(enc.embed_text_features(texts))
        paths = [Path(p) for p in payloads]
        images = image_features(paths, enc.backbones.image, cache, progress=False)
        return _f32(enc.embed_image_features(images))


def _f32(out: Any) -> np.ndarray:
    return np.ascontiguousarray(out, dtype=np.float32)
