"""`xmr index build --cache`: backbone features read from the cache `xmr train` filled give the
same vectors as embedding from the files, including a method's feature transform (aaml's
frozen region PCA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.catalog import Catalog
from tests.fixtures import make_wikipedia_layout
from xmr.cli import main as xmr


@pytest.fixture(scope="module")
def aaml_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("cached-build")
    corpus, run, cache = root / "corpus", root / "run", root / "cache"
    assert xmr(["data", "wikipedia", str(make_wikipedia_layout(root / "src")), str(corpus)]) == 0
    assert xmr(["train", "--data", str(corpus), "--method", "aaml", "--out", str(run),
                "--epochs", "2", "--seed", "0", "--cache", str(cache), "--device", "cpu"]) == 0
    return corpus, run / "checkpoint.pt", cache


def built_vectors(index: Path, checkpoint: Path) -> dict[tuple[str, str], np.ndarray]:
    from models.inference import Encoder

    encoder = Encoder.load(checkpoint)
    catalog = Catalog.open(index, checkpoint_id=encoder.checkpoint_id, dim=encoder.dim)
    try:
        probe = encoder.encode_texts(["probe"])
        found = {}
        for modality in ("image", "text"):
            n = catalog.count(modality)
            for hit in catalog.search(probe, n, modality)[0]:
                found[(modality, hit.record.content_hash)] = np.float32(hit.score)
        return found
    finally:
        catalog.close()


def test_cached_build_matches_uncached(aaml_run: tuple[Path, Path, Path], tmp_path: Path) -> None:
    corpus, checkpoint, cache = aaml_run
    scores = []
    for name, extra in (("plain", []), ("cached", ["--cache", str(cache)])):
        out = tmp_path / name
        assert xmr(["index", "build", "--checkpoint", str(checkpoint), "--data", str(corpus),
                    "--out", str(out), "--no-progress", "--device", "cpu", *extra]) == 0
        scores.append(built_vectors(out, checkpoint))
    plain, cached = scores
    assert plain.keys() == cached.keys() and len(plain) > 0
    for key, score in plain.items():
        assert cached[key] == pytest.approx(score, abs=1e-4), key
