"""Re-ranking with a real aaml checkpoint's cross-attention scorer, over HTTP (slow: it trains
a tiny aaml checkpoint and starts a server of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.conftest import Server, serving
from xmr.cli import main as xmr

pytestmark = pytest.mark.slow
AAML = ("method: aaml\nbatch_size: 8\nembed_dim: 16\n"
        "options: {hidden: 32, attn_dim: 16, region_dim: 16}\n")


@pytest.fixture(scope="module")
def aaml_server(tiny_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Server]:
    corpus, _ = tiny_run
    root = tmp_path_factory.mktemp("aaml")
    config = root / "aaml.yaml"
    config.write_text(AAML)
    assert xmr(["train", "--data", str(corpus), "--config", str(config), "--out",
                str(root / "run"), "--epochs", "2", "--cache", str(root / "cache"),
                "--device", "cpu"]) == 0
    with serving(corpus, root / "run" / "checkpoint.pt", root) as server:
        yield server


def test_rerank_both_directions(aaml_server: Server) -> None:
    picture = (aaml_server.corpus / "images" / "art" / "iart1.jpg").read_bytes()
    with aaml_server.client() as client:
        assert client.get("/v1/info").json()["can_rerank"] is True
        plain = client.post("/v1/search/text-to-image", json={"text": "cells divide", "k": 5})
        t2i = client.post("/v1/search/text-to-image",
                          json={"text": "cells divide", "k": 5, "rerank": True})
        i2t = client.post("/v1/search/image-to-text", data={"k": "4", "rerank": "true"},
                          files={"file": ("q.jpg", picture, "image/jpeg")})
    assert plain.status_code == t2i.status_code == i2t.status_code == 200, t2i.text + i2t.text
    for body, k in ((t2i.json(), 5), (i2t.json(), 4)):
        hits = body["results"]
        assert body["reranked"] is True and len(hits) == k
        assert all(hit["similarity"] is not None for hit in hits)
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
