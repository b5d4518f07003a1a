"""An index rebuilt under a running service: `xmr index build` run from the command line with
another checkpoint (not through /v1/jobs) on the index a real uvicorn server serves. The
service follows the new generation's checkpoint (loads it, then answers with it) or, when that
checkpoint cannot be loaded, refuses with a 409 problem; no request waits without bound."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.inference import checkpoint_id
from tests.fixtures import tiny_cache
from tests.service.conftest import ROOT, Server, serving
from tests.service.test_jobs import variant, wait_for

PROBLEM = "application/problem+json"
SWAP_WAIT_S = 3.0
BOUND_S = 30.0  # no answer may take longer (the client gives up after this: a hang fails)


@pytest.fixture(scope="module")
def served(tiny_exported: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """One server for the module: each test first rebuilds the index it serves with a
    checkpoint of its own (a variant of its own seed), so neither depends on what the other
    left."""
    with serving(*tiny_exported, tmp_path_factory.mktemp("rebuild"),
                 env={"XMR_SWAP_WAIT_S": str(SWAP_WAIT_S),
                      "XMR_REQUEST_TIMEOUT_S": "20"}) as running:
        yield running


def rebuild(server: Server, checkpoint: Path) -> None:
    """`xmr index build` as a user runs it beside the service, on the index it serves (with
    the feature cache the corpus was trained with)."""
    done = subprocess.run(
        [sys.executable, "-m", "xmr", "index", "build", "--checkpoint", str(checkpoint),
         "--data", str(server.corpus), "--out", str(server.index), "--no-progress",
         "--cache", str(tiny_cache(server.checkpoint))],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def timed(client: httpx.Client, method: str, url: str, **kwargs: object
          ) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = client.request(method, url, **kwargs)  # type: ignore[arg-type]
    return answer, time.monotonic() - started


def test_the_service_follows_an_index_rebuilt_with_another_checkpoint(
        served: Server, tmp_path: Path) -> None:
    new = variant(served.checkpoint, tmp_path / "other" / "checkpoint.pt")
    rebuild(served, new)
    body = {"text": "written after the rebuild"}
    with httpx.Client(base_url=served.url, timeout=BOUND_S) as client:
        deadline = time.monotonic() + 120
        while True:  # a 503 while the new encoder loads, then the write lands
            answer, took = timed(client, "POST", "/v1/items", json=body, headers=served.auth)
            assert took < SWAP_WAIT_S + 10, f"{took:.1f} s for one answer"
            if answer.status_code != 503:
                break
            assert answer.headers["content-type"] == PROBLEM and "Retry-After" in answer.headers
            assert time.monotonic() < deadline, "still 503 after two minutes"
            time.sleep(1)
        assert answer.status_code == 201, answer.text
        item = answer.json()["items"][0]
        assert client.get(f"/v1/items/{item['id']}").json()["checkpoint_id"] == checkpoint_id(new)
        found = client.post("/v1/search/text-to-text", json={"text": body["text"], "k": 1})
        assert found.status_code == 200, found.text
        assert found.json()["checkpoint_id"] == checkpoint_id(new)
        assert found.json()["results"][0]["id"] == item["id"]
        assert client.get("/v1/info").json()["checkpoint_id"] == checkpoint_id(new)
        # a re-index job without a checkpoint now re-embeds with the one followed
        job = client.post("/v1/jobs", headers=served.auth, json={"data": str(served.corpus)})
        assert job.status_code == 202, job.text
        assert job.json()["checkpoint"] == str(new.resolve())
        assert wait_for(client, job.json()["id"])["state"] == "succeeded"
        assert client.get("/v1/info").json()["checkpoint_id"] == checkpoint_id(new)


def test_a_rebuild_with_a_checkpoint_the_service_cannot_load_is_refused_not_hung(
        served: Server, tmp_path: Path) -> None:
    gone = variant(served.checkpoint, tmp_path / "gone" / "checkpoint.pt", seed=2)
    rebuild(served, gone)
    gone.unlink()  # the run directory was removed after the build
    with httpx.Client(base_url=served.url, timeout=BOUND_S) as client:
        for method, url, kwargs in (
            ("POST", "/v1/items", {"json": {"text": "after"}, "headers": served.auth}),
            ("POST", "/v1/search/text-to-image", {"json": {"text": "river", "k": 3}}),
        ):
            answer, took = timed(client, method, url, **kwargs)
            assert answer.status_code == 409, answer.text
            assert answer.headers["content-type"] == PROBLEM
            detail = answer.json()["detail"]
            assert "xmr index build" in detail and "--checkpoint" in detail
            assert took < SWAP_WAIT_S + 10
