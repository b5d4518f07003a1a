"""Embedding engines of the re-index job: how a corpus becomes vectors, and nothing else.

`xmr index build --engine local` (default) embeds in this process; `--engine ray` spreads the
same work over a Ray cluster (index/ray_engine.py). Both run the same `CheckpointEmbedder.embed`
on the same payloads, so they give the same vectors to float tolerance, and the job writes them
through one path whatever the engine (ids and metadata cannot differ).

torch and the models package are imported inside `build()`, so importing this module (as the
index layer and the service do) stays torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

ENGINES = ("local", "ray")
MODALITIES = ("image", "text")


class Embedder(Protocol):
    def embed(self, modality: str, payloads: Sequence[str]) -> np.ndarray:
        """float32 (n, d) unit vectors; payloads are texts, or image paths/URIs."""
        ...


class EmbedderSpec(Protocol):
    """Picklable recipe for an Embedder; built once per actor (and once by the local engine)."""

    def build(self, device: str, threads: int | None) -> Embedder: ...


@dataclass(frozen=True)
class EncoderSpec:
    """A checkpoint (and optionally a backbone feature cache) as a picklable recipe."""

    checkpoint: Path
    cache_dir: Path | None = None

    def build(self, device: str = "cpu", threads: int | None = None) -> CheckpointEmbedder:
        import torch

        from models.inference import Encoder

        if threads is not None:
            torch.set_num_threads(threads)
        return CheckpointEmbedder(Encoder.load(self.checkpoint, device), self.cache_dir)


class CheckpointEmbedder:
    """Texts and image files -> unit vectors, backbone features read through the cache."""

    def __init__(self, encoder: object, cache_dir: Path | None) -> None:
        from models.backbones.cache import FeatureCache

        self.encoder = encoder
        self.cache = FeatureCache(cache_dir)

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)  # type: ignore[attr-defined]

    def embed(self, modality: str, payloads: Sequence[str]) -> np.ndarray:
        import torch

        from models.backbones.extract import image_features, text_features

        enc = self.encoder
        if not payloads:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            if modality == "text":
                feats = text_features(list(payloads), enc.backbones.text,  # type: ignore[attr-defined]
                                      self.cache, progress=False)
                batch = {"pooled": feats.pooled, "tokens": feats.tokens, "mask": feats.mask}
                out = enc.method.embed_texts(_tensors(batch, enc.device))  # type: ignore[attr-defined]
            elif modality == "image":
                paths = [Path(p) for p in payloads]
                feats_i = image_features(paths, enc.backbones.image,  # type: ignore[attr-defined]
                                         self.cache, progress=False)
                batch = {"pooled": feats_i.pooled, "regions": feats_i.regions}
                out = enc.method.embed_images(_tensors(batch, enc.device))  # type: ignore[attr-defined]
            else:
                raise ValueError(f"unknown modality {modality!r}; known: {MODALITIES}")
        return np.ascontiguousarray(out.float().cpu().numpy(), dtype=np.float32)


def _tensors(arrays: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    import torch

    return {
        name: torch.from_numpy(a).to(device).float() if a.dtype == np.float16
        else torch.from_numpy(a).to(device)
        for name, a in arrays.items()
    }


class Engine(Protocol):
    def embed(self, spec: EmbedderSpec, modalities: Sequence[str], payloads: Sequence[str],
              dim: int) -> np.ndarray: ...


@dataclass(frozen=True)
class LocalEngine:
    """In this process, modality by modality, `batch_size` payloads at a time."""

    batch_size: int = 256
    embedder: Embedder | None = None  # reuse one already loaded (the service's re-index job)

    def embed(self, spec: EmbedderSpec, modalities: Sequence[str], payloads: Sequence[str],
              dim: int) -> np.ndarray:
        if len(modalities) != len(payloads):
            raise ValueError(f"{len(modalities)} modalities for {len(payloads)} payloads")
        out = np.zeros((len(payloads), dim), dtype=np.float32)
        if not len(payloads):
            return out
        embedder = self.embedder or spec.build("cpu", None)
        kinds = np.asarray(modalities, dtype=object)
        for modality in dict.fromkeys(modalities):
            rows = np.flatnonzero(kinds == modality)
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                out[chunk] = embedder.embed(modality, [payloads[i] for i in chunk])
        return out


def make_engine(name: str, address: str | None = None, workers: int | None = None,
                batch_size: int = 256) -> Engine:
    if name == "local":
        if address is not None:
            raise ValueError("--address needs --engine ray")
        return LocalEngine(batch_size=batch_size)
    if name == "ray":
        from index.ray_engine import RayEngine

        return RayEngine(address=address, workers=workers, batch_size=batch_size)
    raise ValueError(f"unknown engine {name!r}; known: {ENGINES}")
