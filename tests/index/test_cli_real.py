"""`xmr index build` end to end with the real encoder (slow: loads EfficientNet and MiniLM).
Needs the demo artifacts (`make demo-artifacts`); skipped without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from index.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
ART = Path("/work/main/artifacts") if not (ROOT / "artifacts/runs").exists() else ROOT / "artifacts"
CKPT = ART / "runs/default/checkpoint.pt"
CORPUS = ART / "data/openmoji"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CKPT.exists() or not CORPUS.exists(),
                                 reason="demo artifacts missing (make demo-artifacts)")]


def test_cli_builds_a_searchable_index(tmp_path: Path) -> None:
    from models.inference import Encoder

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = (CORPUS / "manifest.jsonl").read_text().splitlines()[:24]
    (corpus / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (corpus / "labels.json").write_text((CORPUS / "labels.json").read_text())
    (corpus / "images").symlink_to(CORPUS / "images")
    out = tmp_path / "index"
    cmd = [sys.executable, "-m", "xmr", "index", "build", "--checkpoint", str(CKPT),
           "--data", str(corpus), "--out", str(out), "--no-progress"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "is live" in done.stdout
    encoder = Encoder.load(CKPT)
    catalog = Catalog.open(out, checkpoint_id=encoder.checkpoint_id, dim=encoder.dim)
    assert catalog.count("text") == 24 and catalog.count("image") == 24
    assert catalog.levels == ("group", "subgroup") or len(catalog.levels) == 2
    text = "grinning face"
    hit = catalog.search(encoder.encode_texts([text]), 1, "text")[0][0]
    assert hit.record.text == text
    images = catalog.search(encoder.encode_texts([text]), 5, "image")[0]
    assert len(images) == 5 and all(h.record.source for h in images)
    assert all(h.record.key and h.record.text for h in images)  # row id and caption
    image = catalog.get_by_key("1F600")  # the corpus row's id is its image's key
    assert image is not None and (image.modality, image.text) == ("image", text)
    assert catalog.get_by_key("1F600:text") == hit.record
    with pytest.raises(ValueError, match="built with checkpoint"):
        Catalog.open(out, checkpoint_id="another", dim=encoder.dim)
