"""`xmr index build` end to end with the real encoder, in a child process as a user runs it, on
the tiny corpus and checkpoint the test session trains (slow: loads EfficientNet and MiniLM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from index.catalog import Catalog
from models.data.corpus import read_corpus

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_cli_builds_a_searchable_index(tmp_path: Path, tiny_run: tuple[Path, Path]) -> None:
    from models.inference import Encoder

    corpus, checkpoint = tiny_run
    out = tmp_path / "index"
    cmd = [sys.executable, "-m", "xmr", "index", "build", "--checkpoint", str(checkpoint),
           "--data", str(corpus), "--out", str(out), "--no-progress"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "is live" in done.stdout
    encoder = Encoder.load(checkpoint)
    catalog = Catalog.open(out, checkpoint_id=encoder.checkpoint_id, dim=encoder.dim)
    items = read_corpus(corpus).items
    assert catalog.count("text") == len(items) and catalog.count("image") == len(items)
    assert catalog.levels == read_corpus(corpus).levels
    text = items[0].text
    hit = catalog.search(encoder.encode_texts([text]), 1, "text")[0][0]
    assert hit.record.text == text and hit.score == pytest.approx(1.0, abs=1e-4)
    images = catalog.search(encoder.encode_texts([text]), 5, "image")[0]
    assert len(images) == 5 and all(h.record.source for h in images)
    assert all(h.record.key and h.record.text for h in images)  # row id and caption
    image = catalog.get_by_key(items[0].id)  # the corpus row's id is its image's key
    assert image is not None and (image.modality, image.text) == ("image", text)
    assert catalog.get_by_key(f"{items[0].id}:text") == hit.record
    catalog.close()
    with pytest.raises(ValueError, match="built with checkpoint"):
        Catalog.open(out, checkpoint_id="another", dim=encoder.dim)


def test_cli_tunes_the_search_parameter_on_the_other_modality(
        tmp_path: Path, tiny_run: tuple[Path, Path]) -> None:
    """An IVF index of the tiny corpus: the manifest names the nprobe tuned on the corpus's
    text vectors, and with it the image index finds >= 95% of their true top 10 (recomputed
    here against FAISS's brute force)."""
    import faiss
    import numpy as np

    from index.generation import open_generation
    from index.manifest import Manifest

    corpus, checkpoint = tiny_run
    out = tmp_path / "index"
    cmd = [sys.executable, "-m", "xmr", "index", "build", "--checkpoint", str(checkpoint),
           "--data", str(corpus), "--out", str(out), "--index-type", "IVF4,Flat",
           "--no-progress"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    gen = open_generation(out / (out / "CURRENT").read_text().strip())
    try:
        tuning = Manifest.read(gen.path).search["image"]
        assert (tuning["param"], tuning["target"]) == ("nprobe", 0.95)
        assert tuning["query_modality"] == "text" and 1 <= tuning["value"] <= 4
        store = gen.stores["image"]
        assert store.knob().value == tuning["value"]  # type: ignore[union-attr]
        ids, base = gen.meta.all_vectors("image", gen.manifest.dim)
        _, queries = gen.meta.all_vectors("text", gen.manifest.dim)
        assert tuning["queries"] == len(queries) == len(read_corpus(corpus).items)
        _, rows = faiss.knn(queries, base, 10, faiss.METRIC_INNER_PRODUCT)
        found = store.search(queries, 10)[1]
        hits = [len(set(f) & set(ids[r])) for f, r in zip(found, rows, strict=True)]
        assert float(np.mean(hits)) / 10 >= 0.95
    finally:
        gen.close()
