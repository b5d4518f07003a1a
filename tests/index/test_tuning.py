"""Tuning an index's search parameter on queries of another distribution (index.tuning),
checked against exact search done here with FAISS's brute force, and its record in the
manifest of a built generation."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from index.build import build
from index.cli import corpus_items
from index.generation import open_generation
from index.manifest import MANIFEST, Manifest
from index.store import FaissStore
from index.tuning import NONE_TO_TUNE, tune
from tests.index.helpers import hash_engine, make_corpus

DIM = 32


def clustered(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Unit vectors around 50 fixed centres; `shift` moves them all along one direction (a
    query distribution that is not the base's)."""
    centres = np.random.default_rng(0).standard_normal((50, DIM))
    centres[:, 0] += shift
    rng = np.random.default_rng(seed)
    rows = centres[rng.integers(0, 50, n)] + 0.8 * rng.standard_normal((n, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def true_recall(store: FaissStore, ids: np.ndarray, base: np.ndarray,
                queries: np.ndarray) -> float:
    _, rows = faiss.knn(queries, base, 10, faiss.METRIC_INNER_PRODUCT)
    found = store.search(queries, 10)[1]
    hits = [len(set(f) & set(ids[r])) for f, r in zip(found, rows, strict=True)]
    return float(np.mean(hits)) / 10


@pytest.mark.parametrize("spec", ["IVF64,Flat", "HNSW16"])
def test_tune_picks_the_smallest_value_that_reaches_the_target(spec: str) -> None:
    base, queries = clustered(4000, seed=1), clustered(300, seed=2, shift=2.0)
    ids = np.arange(len(base), dtype=np.int64) * 7 + 5
    store = FaissStore.create(DIM, spec)
    if not store.is_trained:
        store.train(base)
    store.add(ids, base)
    tuned = tune(store, ids, base, queries, target=0.9, query_modality="text")
    param = "nprobe" if spec.startswith("IVF") else "ef_search"
    assert tuned.param == param and getattr(store, param) == tuned.value
    assert tuned.queries == 300 and tuned.target == 0.9 and tuned.note == ""
    measured = true_recall(store, ids, base, queries)
    assert measured >= 0.9 and measured == pytest.approx(tuned.recall_at_10, abs=1e-4)
    if spec.startswith("IVF"):  # recall grows with nprobe: one less misses the target
        assert tuned.value is not None and tuned.value > 1
        store.nprobe = tuned.value - 1
        assert true_recall(store, ids, base, queries) < 0.9


def test_flat_needs_no_tuning() -> None:
    store = FaissStore.create(DIM, "Flat")
    base = clustered(100, seed=1)
    store.add(np.arange(100), base)
    tuned = tune(store, np.arange(100), base, clustered(10, seed=2), target=0.95)
    assert tuned.param is None and tuned.value is None and tuned.note == NONE_TO_TUNE


def test_build_records_the_tuning_and_the_store_opens_with_it(tmp_path: Path) -> None:
    planned, levels = corpus_items(make_corpus(tmp_path / "corpus"))
    report = build(tmp_path / "idx", hash_engine(), planned, levels=levels,
                   spec="IVF2,Flat", recall_target=0.9)
    manifest = Manifest.read(report.generation)
    assert set(manifest.search) == {"image", "text", "caption"}  # caption: hybrid search
    image = manifest.search["image"]
    assert (image["index"], image["param"], image["target"]) == ("IVF2,Flat", "nprobe", 0.9)
    assert image["query_modality"] == "text" and image["queries"] == 12  # the corpus's texts
    assert manifest.search["text"]["query_modality"] == "image"
    gen = open_generation(report.generation)
    try:
        for modality, tuning in manifest.search.items():
            knob = gen.stores[modality].knob()
            assert knob is not None and knob.value == tuning["value"]
            assert tuning["recall_at_10"] >= 0.9
    finally:
        gen.close()


def test_a_manifest_without_tuning_still_opens(tmp_path: Path) -> None:
    planned, levels = corpus_items(make_corpus(tmp_path / "corpus"))
    report = build(tmp_path / "idx", hash_engine(), planned, levels=levels)
    path = report.generation / MANIFEST
    doc = json.loads(path.read_text())
    assert doc["search"]["image"]["note"] == NONE_TO_TUNE  # small: Flat
    del doc["search"]
    path.write_text(json.dumps(doc))
    assert Manifest.read(report.generation).search == {}
    open_generation(report.generation).close()
