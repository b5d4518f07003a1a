"""Seeded unit vectors for index tests: clustered like embeddings, not uniform noise."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.engines import LocalEngine
from tests.fixtures import unit


def clustered(n: int, dim: int = 32, centres: int = 20, spread: float = 0.3,
              seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = unit(rng.standard_normal((centres, dim)))
    rows = means[rng.integers(0, centres, n)] + spread / np.sqrt(dim) * rng.standard_normal(
        (n, dim))
    return unit(rows)


def exact(data: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Naive top-k ids by inner product (the slow path the index is checked against)."""
    scores = queries @ data.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[order]


class HashEmbedder:
    """A deterministic stand-in for models.embedder.CheckpointEmbedder at the index layer's
    boundary: equal content -> equal unit vector, `salt` plays the role of another checkpoint.
    The job's logic (ids, generations, replay, resume) does not depend on what the vectors
    mean; the real encoder runs in the slow CLI tests.
    `encode_texts` / `encode_images` make query vectors (and are what a test overrides to act
    while the job embeds); `calls` counts them."""

    def __init__(self, dim: int = 16, salt: str = "a") -> None:
        self.dim = dim
        self.checkpoint_id = f"hash-{salt}"
        self.salt = salt
        self.calls = 0

    def _vector(self, content: bytes) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(self.salt.encode() + content).digest()[:8], "big")
        return unit(np.random.default_rng(seed).standard_normal((1, self.dim)))[0]

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self._vector(t.encode()) for t in texts]).astype(np.float32)

    def encode_images(self, images: list) -> np.ndarray:
        self.calls += 1
        return np.stack([self._vector(np.asarray(im).tobytes()) for im in images]).astype(
            np.float32)

    def embed(self, modality: str, payloads: Sequence[str]) -> np.ndarray:
        """As the engine asks: texts, or image files (a NaN row for one that cannot be read)."""
        if modality == "text":
            return self.encode_texts(list(payloads))
        from models.data.images import ImageError, open_image

        out = np.full((len(payloads), self.dim), np.nan, dtype=np.float32)
        opened = {}
        for row, path in enumerate(payloads):
            with contextlib.suppress(ImageError):
                opened[row] = open_image(path)
        if opened:
            out[list(opened)] = self.encode_images(list(opened.values()))
        return out


@dataclass(frozen=True)
class HashSpec:
    """A HashEmbedder as a picklable recipe (what a Ray actor builds)."""

    dim: int = 16
    salt: str = "a"

    def build(self, device: str = "cpu", threads: int | None = None) -> HashEmbedder:
        return HashEmbedder(self.dim, self.salt)


def hash_engine(embedder: HashEmbedder | None = None, batch_size: int = 4) -> LocalEngine:
    """The local engine running `embedder` (a fresh HashEmbedder by default)."""
    embedder = embedder or HashEmbedder()
    return LocalEngine(HashSpec(embedder.dim, embedder.salt), batch_size=batch_size,
                       embedder=embedder)


def make_corpus(root: Path, n: int = 12) -> Path:
    """n image-text pairs in the pinned format; two levels; image i % 10 (shared images)."""
    from PIL import Image

    from models.data.corpus import Item, write_corpus

    (root / "images").mkdir(parents=True)
    items = []
    for i in range(n):
        image = f"images/{i % 10}.png"
        if not (root / image).exists():
            Image.new("RGB", (32, 32), (20 * (i % 10), 255 - 20 * (i % 10), 7)).save(root / image)
        group = "warm" if i % 2 else "cold"
        items.append(Item(f"item{i}", image, f"caption number {i}", (group, f"{group}{i % 3}"),
                          "test" if i % 5 == 0 else "train"))
    sets = {"group": ["cold", "warm"], "sub": [f"{g}{k}" for g in ("cold", "warm")
                                               for k in range(3)]}
    write_corpus(root, items, ["group", "sub"], sets)
    return root
