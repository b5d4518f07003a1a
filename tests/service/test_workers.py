"""`xmr serve` with two worker processes on one port (a real uvicorn supervisor over the tiny
run): every process sees the items another stored, answers for a job another runs, follows the
generation that job swaps in, and the metrics count the requests of both."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.checkpoint import checkpoint_id
from tests.service.conftest import ROOT, Server, free_port, serving
from tests.service.test_jobs import variant, wait_for

ACCESS = re.compile(r" INFO (\d+) \[([^\]]+)\] uvicorn\.access: ")


@pytest.fixture(scope="module")
def two(tiny_exported: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Server]:
    with serving(*tiny_exported, tmp_path_factory.mktemp("workers"),
                 env={"XMR_WORKERS": "2"}) as running:
        yield running


def answered_by(server: Server, request_ids: set[str]) -> dict[str, int]:
    """Request id -> the pid of the process whose access log line carries it."""
    time.sleep(0.3)  # the access line is written after the answer
    return {rid: int(pid) for pid, rid in ACCESS.findall(server.log_text())
            if rid in request_ids}


def from_both(server: Server, method: str, path: str, check, **kwargs: object) -> int:
    """Send the request on a fresh connection each time until both processes have answered
    it (at most 200 times); `check` asserts on each answer. How many were sent."""
    sent: set[str] = set()
    for _ in range(200):
        rid = uuid.uuid4().hex
        sent.add(rid)
        answer = httpx.request(method, server.url + path, timeout=60,
                               headers={"X-Request-ID": rid}, **kwargs)  # type: ignore[arg-type]
        check(answer)
        if len(sent) % 10 == 0 and len(set(answered_by(server, sent).values())) == 2:
            return len(sent)
    pytest.fail(f"one process answered all {len(sent)} requests")


def test_a_stored_item_is_found_by_every_process(two: Server) -> None:
    text = "a lighthouse on a purple cliff"
    with two.client() as client:
        made = client.post("/v1/items", headers=two.auth, json={"text": text})
    assert made.status_code == 201, made.text
    item = made.json()["items"][0]["id"]

    def finds_it(answer: httpx.Response) -> None:
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["id"] == item

    from_both(two, "POST", "/v1/search/text-to-text", finds_it, json={"text": text, "k": 1})
    with two.client() as client:
        assert client.delete(f"/v1/items/{item}", headers=two.auth).status_code == 204


def test_metrics_count_the_requests_of_both_processes(two: Server) -> None:
    def counted() -> float:  # whichever process answers the scrape
        text = httpx.get(two.url + "/metrics", timeout=60).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("http_requests_total{") and 'handler="/healthz"' in line)

    before = counted()
    sent = from_both(two, "GET", "/healthz", lambda answer: answer.raise_for_status())
    assert counted() - before == sent


def test_a_job_run_by_one_process_is_seen_and_followed_by_both(two: Server,
                                                               tmp_path: Path) -> None:
    new = variant(two.checkpoint, tmp_path / "variant" / "checkpoint.pt", seed=7)
    with two.client() as client:
        started = client.post("/v1/jobs", headers=two.auth,
                              json={"data": str(two.corpus), "checkpoint": str(new)})
        assert started.status_code == 202, started.text
        job = started.json()["id"]
        from_both(two, "GET", f"/v1/jobs/{job}", lambda a: a.raise_for_status())
        done = wait_for(client, job)
        assert done["state"] == "succeeded", done

    def on_the_new_checkpoint(answer: httpx.Response) -> None:
        assert answer.status_code == 200, answer.text
        assert answer.json()["checkpoint_id"] == checkpoint_id(new)

    from_both(two, "POST", "/v1/search/text-to-image", on_the_new_checkpoint,
              json={"text": "river", "k": 3})
    from_both(two, "GET", "/v1/info", on_the_new_checkpoint)
    two.checkpoint = new


def test_a_process_that_cannot_start_stops_them_all_with_an_error(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "xmr", "serve", "--workers", "2", "--port", str(free_port()),
         "--checkpoint", str(tmp_path / "missing.pt"), "--index", str(tmp_path / "index")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "a server process failed to start" in done.stderr
    assert not list(tmp_path.glob("xmr-metrics-*")), "the metrics directory was left behind"
