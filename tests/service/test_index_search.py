"""`GET /v1/info` reports how the served index searches: the parameter `xmr index build` tuned
on queries of the other modality and the recall it measured (a real uvicorn server over an
index built by the command line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from index.manifest import Manifest
from tests.fixtures import tiny_cache
from tests.service.conftest import ROOT, start_server


def test_info_shows_the_tuned_search_parameter(tiny_exported: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    corpus, checkpoint = tiny_exported
    index = tmp_path / "index"
    done = subprocess.run(
        [sys.executable, "-m", "xmr", "index", "build", "--checkpoint", str(checkpoint),
         "--data", str(corpus), "--out", str(index), "--index-type", "IVF4,Flat",
         "--recall-target", "0.9", "--no-progress", "--cache", str(tiny_cache(checkpoint))],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    recorded = Manifest.read(index / (index / "CURRENT").read_text().strip()).search
    server = start_server(index, checkpoint, tmp_path / "server.log", corpus)
    try:
        with server.client() as client:
            info = client.get("/v1/info").json()
    finally:
        server.stop()
    shown = info["index_search"]
    assert set(shown) == {"image", "text", "caption"} and shown == recorded  # caption: hybrid
    assert shown["image"]["param"] == "nprobe" and shown["image"]["target"] == 0.9
    assert shown["image"]["query_modality"] == "text" and shown["image"]["recall_at_10"] >= 0.9
    assert info["items"] == {"image": 12, "text": 12}  # the existing fields stay
