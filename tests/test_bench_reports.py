"""Every committed benchmark result renders from its JSON to its committed markdown, byte for
byte, through the one report renderer (bench/report.py and bench/templates/)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from bench import (
    features,
    fusion,
    index_report,
    peers_report,
    quality_report,
    scale_bench,
    service_report,
    two_commands,
)
from bench.harness import RESULTS

RENDERERS: dict[str, Callable[[dict], str]] = {
    "features": features.markdown, "index": index_report.markdown, "scale": scale_bench.markdown,
    "quality": quality_report.markdown, "peers": peers_report.markdown,
    "service": service_report.markdown, "runtimes": service_report.runtimes_markdown,
    "two_commands": two_commands.markdown, "fusion": fusion.markdown,
}


def read(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", RENDERERS)
def test_a_committed_result_renders_as_committed(name: str) -> None:
    assert RENDERERS[name](read(name)) == (RESULTS / f"{name}.md").read_text()


def test_every_committed_result_with_a_report_is_rendered_here() -> None:
    # the retired diagnostics (bench/results/README.md) kept their reports, not their renderers
    retired = {"cpu_split", "feature_probes", "gil_probe", "posterior_ceiling", "service_ab"}
    assert {p.stem for p in RESULTS.glob("*.json")} == set(RENDERERS) | retired


def test_the_committed_runs_hold_what_the_reports_read() -> None:
    peers = read("peers")
    assert {(r["system"], r["clients"]) for r in peers["runs"]} == {
        (s, c) for s in peers_report.SYSTEMS for c in (1, 8, 32)}
    assert all(set(r) >= {"qps", "p50_ms", "p99_ms", "rss_mb"} for r in peers["runs"])
    service = read("service")
    assert {r["clients"] for r in service["runs"]} == set(service_report.CLIENTS)
    assert all(read(n)["load_generator"].startswith("wrk ") for n in ("service", "runtimes"))


def test_a_changed_figure_changes_the_report() -> None:
    result = read("features")
    result["cold"]["images_per_s"] += 1
    assert features.markdown(result) != (RESULTS / "features.md").read_text()
