"""Re-index jobs through the API: `xmr index build` in a child process with a new checkpoint,
the service swapping encoder and generation while searches keep being answered."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image

from models.checkpoint import checkpoint_id, load_checkpoint, save_checkpoint
from tests.service.conftest import Server


def variant(checkpoint: Path, out: Path, seed: int = 1) -> Path:
    """Another checkpoint of the same method: the weights nudged by 1% noise of `seed` (one
    checkpoint id per seed)."""
    saved = load_checkpoint(checkpoint)
    generator = torch.Generator().manual_seed(seed)
    weights = {
        name: value + 0.01 * value.std().nan_to_num() * torch.randn(value.shape,
                                                                      generator=generator)
        if value.is_floating_point() and value.numel() > 1 else value
        for name, value in saved.state_dict.items()}
    save_checkpoint(out, replace(saved, state_dict=weights))
    return out


class Searcher(threading.Thread):
    """Searches in a loop until stopped; records every status and checkpoint id seen."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stopping = threading.Event()
        self.statuses: list[int] = []
        self.checkpoints: set[str] = set()

    def run(self) -> None:
        image = io.BytesIO()
        Image.new("RGB", (30, 30), (40, 60, 200)).save(image, "PNG")
        with httpx.Client(base_url=self.server.url, timeout=60) as client:
            while not self.stopping.is_set():
                for answer in (
                    client.post("/v1/search/text-to-image", json={"text": "river", "k": 5}),
                    client.post("/v1/search/image-to-text",
                                files={"file": ("q.png", image.getvalue(), "image/png")}),
                ):
                    self.statuses.append(answer.status_code)
                    if answer.status_code == 200:
                        self.checkpoints.add(answer.json()["checkpoint_id"])


def wait_for(client: httpx.Client, job_id: str, timeout: float = 300) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed"):
            return dict(job)
        time.sleep(0.5)
    pytest.fail(f"job {job_id} still running after {timeout} s")


def test_reindex_job_swaps_checkpoint_and_generation_without_dropping_requests(
        server: Server, tmp_path: Path) -> None:
    new = variant(server.checkpoint, tmp_path / "variant" / "checkpoint.pt")
    new_id = checkpoint_id(new)
    with server.client() as client:
        old_id = client.get("/v1/info").json()["checkpoint_id"]
        assert new_id != old_id
        api_item = client.post("/v1/items", headers=server.auth,
                               json={"text": "an item added through the API before the job"}
                               ).json()["items"][0]
        searcher = Searcher(server)
        searcher.start()
        started = client.post("/v1/jobs", headers=server.auth,
                              json={"data": str(server.corpus), "checkpoint": str(new)})
        assert started.status_code == 202, started.text
        job = started.json()
        assert job["state"] in ("queued", "running")
        busy = client.post("/v1/jobs", headers=server.auth, json={"data": str(server.corpus)})
        assert busy.status_code == 409
        assert busy.headers["content-type"] == "application/problem+json"
        done = wait_for(client, job["id"])
        time.sleep(1.0)  # a few searches on the new generation too
        searcher.stopping.set()
        searcher.join(timeout=60)

        assert done["state"] == "succeeded", done
        assert done["exit_code"] == 0 and done["progress"] == 1.0 and done["log_tail"]
        assert done["done"] == done["total"] > 0 and done["rate"] > 0  # numbers, not bars
        assert not any("it/s" in line or "|" in line for line in done["log_tail"])
        assert Path(str(done["cache"])).is_dir()  # the features it read through, and added
        info = client.get("/v1/info").json()
        assert info["checkpoint_id"] == new_id
        kept = client.get(f"/v1/items/{api_item['id']}").json()
        assert kept["checkpoint_id"] == new_id, "API items are re-embedded and keep their id"
        hits = client.post("/v1/search/text-to-text", json={
            "text": "an item added through the API before the job", "k": 1}).json()
        assert hits["results"][0]["id"] == api_item["id"]
        assert hits["checkpoint_id"] == new_id
        corpus_text = client.get(f"/v1/items/{server.items['tart1']['text']}").json()
        assert corpus_text["checkpoint_id"] == new_id, "corpus ids are stable across builds"
        assert any(j["id"] == job["id"] for j in client.get("/v1/jobs").json()["jobs"])
        client.delete(f"/v1/items/{api_item['id']}", headers=server.auth)

    assert searcher.statuses and set(searcher.statuses) == {200}, searcher.statuses
    assert new_id in searcher.checkpoints
    server.checkpoint = new  # later tests start from the checkpoint now served
