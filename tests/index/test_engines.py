"""The Ray engine against the local engine: same rows in, same vectors out, in row order.

The default-suite test runs a real local Ray instance with a real actor pool, on a cheap
deterministic embedder (hashing, no torch), so it checks Ray's plumbing (batching, mixed
modalities, ordering, the actor pool) in seconds. The slow test runs both engines with a real
checkpoint through the encoder and the feature cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from index.engines import EncoderSpec, LocalEngine, make_engine

DIM = 8


@dataclass(frozen=True)
class HashSpec:
    """Unit vectors from a hash of (modality, payload), remembering which process made them."""

    def build(self, device: str = "cpu", threads: int | None = None) -> HashEmbedder:
        return HashEmbedder()


class HashEmbedder:
    def embed(self, modality: str, payloads: Sequence[str]) -> np.ndarray:
        rows = []
        for payload in payloads:
            digest = hashlib.sha256(f"{modality}:{payload}".encode()).digest()
            rows.append(np.frombuffer(digest[: DIM * 2], dtype=np.int16).astype(np.float32))
        out = np.stack(rows)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def rows(n: int) -> tuple[list[str], list[str]]:
    modalities = ["text" if i % 3 else "image" for i in range(n)]
    return modalities, [f"item {i}" for i in range(n)]


def test_local_engine_keeps_row_order_across_modalities() -> None:
    modalities, payloads = rows(50)
    out = LocalEngine(batch_size=7).embed(HashSpec(), modalities, payloads, DIM)
    for i in (0, 1, 2, 49):
        assert np.array_equal(out[i], HashEmbedder().embed(modalities[i], [payloads[i]])[0])


def test_ray_engine_equals_local_engine() -> None:
    pytest.importorskip("ray")
    modalities, payloads = rows(1000)
    local = LocalEngine(batch_size=64).embed(HashSpec(), modalities, payloads, DIM)
    ray_out = make_engine("ray", workers=2, batch_size=64).embed(
        HashSpec(), modalities, payloads, DIM)
    assert ray_out.shape == (1000, DIM)
    assert np.array_equal(local, ray_out)  # same function on the same rows: bit-identical


def test_engine_choice_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        make_engine("spark")
    with pytest.raises(ValueError, match="--address needs --engine ray"):
        make_engine("local", address="ray://head:10001")
    with pytest.raises(ValueError, match="modalities"):
        LocalEngine().embed(HashSpec(), ["text"], [], DIM)


ARTIFACTS = Path(os.environ.get("XMR_TEST_ARTIFACTS", "/work/main/artifacts"))
CHECKPOINT = ARTIFACTS / "runs/default/checkpoint.pt"


@pytest.mark.slow
@pytest.mark.skipif(not CHECKPOINT.exists(), reason=f"needs a checkpoint at {CHECKPOINT}")
def test_ray_engine_with_a_real_encoder_matches_local() -> None:
    from models.data.corpus import read_corpus

    corpus = read_corpus(ARTIFACTS / "data/openmoji")
    items = list(corpus.items)[:200]
    modalities = ["text"] * len(items) + ["image"] * len(items)
    payloads = [i.text for i in items] + [str(corpus.image_path(i)) for i in items]
    spec = EncoderSpec(CHECKPOINT, ARTIFACTS / "cache")
    dim = spec.build().dim
    local = make_engine("local").embed(spec, modalities, payloads, dim)
    ray_out = make_engine("ray", workers=2, batch_size=64).embed(spec, modalities, payloads, dim)
    np.testing.assert_allclose(ray_out, local, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(local, axis=1), 1.0, atol=1e-4)
