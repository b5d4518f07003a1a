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
