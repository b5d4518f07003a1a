"""Embedding engines of the re-index job: how a corpus becomes vectors, and nothing else.

`xmr index build --engine local` (default) embeds in this process; `--engine ray` spreads the
same work over a Ray cluster (index/ray_engine.py). Both run the same `CheckpointEmbedder.embed`
on the same payloads, so they give the same vectors to float tolerance, and the job writes them
through one path whatever the engine (ids and metadata cannot differ).

torch and the models package are imported inside `build()`, so importing this module (as the
index layer and the service do) stays torch-free.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

ENGINES = ("local", "ray")
MODALITIES = ("image", "text")


class Embedder(Protocol):
    def embed(self, modality: str, payloads: Sequence[str]) -> np.ndarray:
        """float32 (n, d) unit vectors; payloads are texts, or image paths. A row of NaN marks
        an image that could not be read (the job leaves it out and reports it)."""
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
    """Texts and image files -> unit vectors. Without a cache: exactly what the local build
    job does (Encoder.encode_texts, open_image + Encoder.encode_images). With one: backbone
    features read through (and added to) the feature cache, then the checkpoint's heads."""

    def __init__(self, encoder: Any, cache_dir: Path | None) -> None:
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
        from models.data.images import open_image

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
        from models.backbones.cache import FeatureCache
        from models.backbones.extract import image_features, text_features

        enc, cache = self.encoder, FeatureCache(self.cache_dir)
        if modality == "text":
            texts = text_features(list(payloads), enc.backbones.text, cache, progress=False)
            return _f32(enc.embed_text_features(texts))
        paths = [Path(p) for p in payloads]
        images = image_features(paths, enc.backbones.image, cache, progress=False)
        return _f32(enc.embed_image_features(images))


def _f32(out: Any) -> np.ndarray:
    return np.ascontiguousarray(out, dtype=np.float32)


Batches = Iterator[tuple[np.ndarray, np.ndarray]]  # (row numbers, their vectors)


class Engine(Protocol):
    def stream(self, spec: EmbedderSpec, modalities: Sequence[str],
               payloads: Sequence[str]) -> Batches:
        """Vectors batch by batch, as they are ready (not necessarily in row order)."""
        ...

    def embed(self, spec: EmbedderSpec, modalities: Sequence[str], payloads: Sequence[str],
              dim: int) -> np.ndarray: ...


def collect(batches: Batches, n: int, dim: int) -> np.ndarray:
    """Every row's vector, in row order."""
    out = np.zeros((n, dim), dtype=np.float32)
    done = 0
    for rows, vectors in batches:
        out[rows] = vectors
        done += len(rows)
    if done != n:
        raise RuntimeError(f"engine returned {done} vectors for {n} rows")
    return out


def _check_rows(modalities: Sequence[str], payloads: Sequence[str]) -> None:
    if len(modalities) != len(payloads):
        raise ValueError(f"{len(modalities)} modalities for {len(payloads)} payloads")


@dataclass(frozen=True)
class LocalEngine:
    """In this process, modality by modality, `batch_size` payloads at a time."""

    batch_size: int = 256
    embedder: Embedder | None = None  # reuse one already loaded

    def stream(self, spec: EmbedderSpec, modalities: Sequence[str],
               payloads: Sequence[str]) -> Batches:
        _check_rows(modalities, payloads)
        if not len(payloads):
            return
        embedder = self.embedder or spec.build("cpu", None)
        kinds = np.asarray(modalities, dtype=object)
        for modality in dict.fromkeys(modalities):
            rows = np.flatnonzero(kinds == modality)
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                yield chunk, embedder.embed(modality, [payloads[i] for i in chunk])

    def embed(self, spec: EmbedderSpec, modalities: Sequence[str], payloads: Sequence[str],
              dim: int) -> np.ndarray:
        return collect(self.stream(spec, modalities, payloads), len(payloads), dim)


@dataclass(frozen=True)
class BoundEngine:
    """An engine with its embedder recipe: what `index.build.build(engine=...)` takes."""

    engine: Engine
    spec: EmbedderSpec

    def stream(self, modalities: Sequence[str], payloads: Sequence[str]) -> Batches:
        return self.engine.stream(self.spec, modalities, payloads)


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
