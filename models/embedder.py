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

import numpy as np

from models.backbones.cache import FeatureCache
from models.backbones.extract import readable_image_features, text_features
from models.inference import Encoder


@dataclass(frozen=True)
class EncoderSpec:
    """A checkpoint (and optionally a backbone feature cache) as a picklable recipe."""

    checkpoint: Path
    cache_dir: Path | None = None

    def build(self, device: str = "cpu", threads: int | None = None) -> CheckpointEmbedder:
        return CheckpointEmbedder(Encoder.load(self.checkpoint, device, threads), self.cache_dir)


class CheckpointEmbedder:
    """Texts and image files -> unit vectors: backbone features (read through the feature
    cache when there is one, and added to it), then the checkpoint's heads. The same path as
    `xmr eval` and, for fresh inputs, as the service's `Encoder.encode_*`."""

    def __init__(self, encoder: Encoder, cache_dir: Path | None) -> None:
        self.encoder = encoder
        self.cache = FeatureCache(cache_dir)  # FeatureCache(None) caches nothing

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    @property
    def checkpoint_id(self) -> str:
        return self.encoder.checkpoint_id

    def embed(self, modality: str, payloads: Sequence[str]) -> np.ndarray:
        """float32 (n, dim); for images, a NaN row where the file could not be read."""
        if modality == "text":
            return self._texts(payloads)
        if modality == "image":
            return self._images(payloads)
        raise ValueError(f"unknown modality {modality!r}")

    def _texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        backbone = self.encoder.backbones.text
        features = text_features(list(texts), backbone, self.cache, progress=False)
        return _f32(self.encoder.embed_text_features(features))

    def _images(self, paths: Sequence[str]) -> np.ndarray:
        out = np.full((len(paths), self.dim), np.nan, dtype=np.float32)
        features, unreadable = readable_image_features(
            [Path(p) for p in paths], self.encoder.backbones.image, self.cache)
        readable = np.setdiff1d(np.arange(len(paths)), unreadable)
        if len(readable):
            out[readable] = self.encoder.embed_image_features(features)
        return out


def _f32(out: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(out, dtype=np.float32)
