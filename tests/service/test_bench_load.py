"""The served benchmarks' one load generator on a real `xmr serve` (the tiny test service):
wrk with bench/wrk.lua counts only complete answers holding the expected hits, and one measured
run gives the figures each report reads (bench.peers, bench.service_bench). The peers
themselves are not installed here: `make bench-peers` does that."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import harness, peers, report, service_bench
from tests.service.conftest import Server

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None,
                                reason="wrk (Debian package) is not installed")
K = 4
QUERIES = [f"river mountains sea {i}" for i in range(20)]


def target(server: Server, tmp_path: Path, k: int = K) -> harness.Target:
    return harness.Target.searches("xmr", server, QUERIES, k, tmp_path)  # type: ignore[arg-type]


def test_wrk_counts_complete_answers_and_flags_short_ones(server: Server, tmp_path: Path
                                                         ) -> None:
    figures, wrk_cpu = harness.wrk(target(server, tmp_path), clients=2, seconds=1, start=0)
    assert figures["requests"] > 5 and figures["bad"] == 0 and figures["errors"] == 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] and 0.5 < figures["seconds"] < 2
    assert wrk_cpu > 0
    # asking one hit more than k: every answer is short, and counted bad
    short = target(server, tmp_path)
    short.least = K + 1
    figures, _ = harness.wrk(short, clients=2, seconds=1, start=3)
    assert figures["requests"] > 5 and figures["bad"] == figures["requests"]


def test_a_measured_peer_run_gives_the_reported_figures(server: Server, tmp_path: Path) -> None:
    run = peers.measure(target(server, tmp_path), 4, SimpleNamespace(warmup=1, seconds=1), 0)
    assert run["system"] == "xmr" and run["clients"] == 4 and run["qps"] > 5
    assert run["rss_mb"] > 100 and run["server_cpu_ms"] > 0 and run["wrk_cpu_ms"] > 0
    assert run["bad"] == 0 and run["errors"] == 0
    assert peers.medians([run, {**run, "qps": 3 * run["qps"], "repeat": 1},
                          {**run, "qps": 2 * run["qps"], "repeat": 2}], ["xmr"])[0]["qps"] \
        == 2 * run["qps"]


def test_a_service_run_reads_the_encoder_inside_the_server(server: Server, tmp_path: Path
                                                          ) -> None:
    run = service_bench.load_run(target(server, tmp_path, service_bench.K), 4,
                                 SimpleNamespace(warmup=1, seconds=1), {"corpus": "tiny"})
    assert run["corpus"] == "tiny" and run["clients"] == 4 and run["qps"] > 5
    assert run["bad"] == 0 and run["errors"] == 0 and run["wrk_cpu_ms"] > 0
    # four connections keep the encoder's queue fed: batches of one to four texts
    assert 1 <= run["mean_batch"] <= 4 and run["server_encode_ms"] > 0
    prose = report.ENV.get_template("macros.j2").module.load_generator  # type: ignore[attr-defined]
    assert prose([run], harness.load_generator()).startswith("Load generator: wrk ")
