"""The peer benchmark's load generator and measurement on a real `xmr serve` (the tiny test
service): wrk with bench/peers.lua counts only complete answers holding the expected hits, and
one measured run gives the figures the report reads. The peers themselves are not installed
here: `make bench-peers` does that."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import peers, peers_report
from bench.harness import RESULTS
from tests.service.conftest import Server

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None,
                                reason="wrk (Debian package) is not installed")
K = 4


def system(server: Server, tmp_path: Path, least: int) -> peers.System:
    bodies = [json.dumps({"text": f"river mountains sea {i}", "k": K}) for i in range(20)]
    lines = [f"POST\t/v1/search/text-to-image\t{body}" for body in bodies]
    return peers.System.of("xmr", "test", server, lines, '"score"', least,  # type: ignore[arg-type]
                           tmp_path)


def test_wrk_counts_complete_answers_and_flags_short_ones(server: Server, tmp_path: Path
                                                         ) -> None:
    figures, wrk_cpu = peers.wrk(system(server, tmp_path, K), clients=2, seconds=1, start=0)
    assert figures["requests"] > 5 and figures["bad"] == 0 and figures["errors"] == 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] and 0.5 < figures["seconds"] < 2
    assert wrk_cpu > 0
    # asking one hit more than k: every answer is short, and counted bad
    figures, _ = peers.wrk(system(server, tmp_path, K + 1), clients=2, seconds=1, start=3)
    assert figures["requests"] > 5 and figures["bad"] == figures["requests"]


def test_a_measured_run_gives_the_reported_figures(server: Server, tmp_path: Path) -> None:
    run = peers.measure(system(server, tmp_path, K), 4, SimpleNamespace(warmup=1, seconds=1), 0)
    assert run["system"] == "xmr" and run["clients"] == 4 and run["qps"] > 5
    assert run["rss_mb"] > 100 and run["server_cpu_ms"] > 0 and run["wrk_cpu_ms"] > 0
    assert run["bad"] == 0 and run["errors"] == 0
    assert peers.medians([run, {**run, "qps": 3 * run["qps"], "repeat": 1},
                          {**run, "qps": 2 * run["qps"], "repeat": 2}], ["xmr"])[0]["qps"] \
        == round(2 * run["qps"], 2)


@pytest.mark.skipif(not (RESULTS / "peers.json").exists(), reason="no committed peer results")
def test_committed_peer_results_hold_every_system_and_render_as_committed() -> None:
    result = json.loads((RESULTS / "peers.json").read_text())
    assert {(r["system"], r["clients"]) for r in result["runs"]} == {
        (s, c) for s in ("xmr", "txtai", "infinity-emb") for c in (1, 8, 32)}
    assert all(set(r) >= {"qps", "p50_ms", "p99_ms", "rss_mb"} for r in result["runs"])
    assert peers_report.markdown(result) == (RESULTS / "peers.md").read_text()
