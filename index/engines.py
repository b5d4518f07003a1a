"""Embedding engines of the re-index job: how a corpus becomes vectors, and nothing else.

`xmr index build --engine local` (default) embeds in this process; `--engine ray` spreads the
same work over a Ray cluster (index/ray_engine.py). Both run the same `Embedder.embed` (for a
checkpoint: models.embedder.CheckpointEmbedder) on the same payloads, so they give the same
vectors to float tolerance, and the job writes them through one path whatever the engine (ids
and metadata cannot differ). Nothing here imports torch: the embedder is built from its spec.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

ENGINES = ("local", "ray")


class Embedder(Protocol):
    @property
    def checkpoint_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, modality: str, payloads: Sequence[str]) -> np.ndarray:
        """float32 (n, d) unit vectors; payloads are texts, or image paths. A row of NaN marks
        an image that could not be read (the job leaves it out and reports it)."""
        ...


class EmbedderSpec(Protocol):
    """Picklable recipe for an Embedder; built once per actor (and once by the local engine)."""

    def build(self, device: str, threads: int | None) -> Embedder: ...


Batches = Iterator[tuple[np.ndarray, np.ndarray]]  # (row numbers, their vectors)


class Engine(Protocol):
    """How the re-index job computes vectors. Rows are (modality, text or image path); batches
    come back as (row numbers, vectors) as they are ready, in any order, a NaN row for an image
    that could not be read. The job (index.build) writes them as its own batches.
    `checkpoint_id` and `dim` name the vectors' space (what the new generation records)."""

    @property
    def checkpoint_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def stream(self, modalities: Sequence[str], payloads: Sequence[str]) -> Batches: ...


def embed_rows(engine: Engine, modalities: Sequence[str], payloads: Sequence[str],
               dim: int) -> np.ndarray:
    """Every row's vector, in row order."""
    out = np.zeros((len(payloads), dim), dtype=np.float32)
    done = 0
    for rows, vectors in engine.stream(modalities, payloads):
        out[rows] = vectors
        done += len(rows)
    if done != len(payloads):
        raise RuntimeError(f"engine returned {done} vectors for {len(payloads)} rows")
    return out


def check_rows(modalities: Sequence[str], payloads: Sequence[str]) -> None:
    if len(modalities) != len(payloads):
        raise ValueError(f"{len(modalities)} modalities for {len(payloads)} payloads")


@dataclass(frozen=True)
class LocalEngine:
    """In this process, modality by modality, `batch_size` payloads at a time."""

    spec: EmbedderSpec
    batch_size: int = 256
    embedder: Embedder | None = None  # reuse one already loaded (else built from `spec`)

    @cached_property
    def _embedder(self) -> Embedder:
        return self.embedder or self.spec.build("cpu", None)

    @property
    def checkpoint_id(self) -> str:
        return self._embedder.checkpoint_id

    @property
    def dim(self) -> int:
        return int(self._embedder.dim)

    def stream(self, modalities: Sequence[str], payloads: Sequence[str]) -> Batches:
        check_rows(modalities, payloads)
        if not len(payloads):
            return
        embedder = self._embedder
        kinds = np.asarray(modalities, dtype=object)
        for modality in dict.fromkeys(modalities):
            rows = np.flatnonzero(kinds == modality)
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                yield chunk, embedder.embed(modality, [payloads[i] for i in chunk])
