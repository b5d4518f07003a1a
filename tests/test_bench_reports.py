"""Every committed benchmark result renders from its JSON to its committed markdown, byte for
byte, through the one report renderer (bench/report.py and bench/templates/)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import (
    features,
    fusion,
    index_bench,
    peers,
    quality_report,
    report,
    scale_bench,
    service_report,
    two_commands,
)
from bench.harness import RESULTS

RENDERERS: dict[str, Callable[[dict], str]] = {
    "features": features.markdown, "index": index_bench.markdown, "scale": scale_bench.markdown,
    "quality": quality_report.markdown, "peers": peers.markdown,
    "service": service_report.markdown, "runtimes": service_report.runtimes_markdown,
    "two_commands": two_commands.markdown, "fusion": fusion.markdown,
    "docker": lambda result: report.render("docker", **result),
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
    result = read("peers")
    assert {(r["system"], r["clients"]) for r in result["runs"]} == {
        (s, c) for s in peers.SYSTEMS for c in (1, 8, 32)}
    assert all(set(r) >= {"qps", "p50_ms", "p99_ms", "rss_mb"} for r in result["runs"])
    service = read("service")
    assert {r["clients"] for r in service["runs"]} == set(service_report.CLIENTS)
    assert all(read(n)["load_generator"].startswith("wrk ") for n in ("service", "runtimes"))


def test_the_peers_report_renders_without_infinity_emb_s_reference_engine() -> None:
    """`--infinity optimum` alone: no torch reference rows to compare with."""
    result = read("peers")
    result = {**result, "reference_runs": [],
              "raw": [r for r in result["raw"] if r["system"] in peers.SYSTEMS],
              **{key: {name: v for name, v in result[key].items() if name in peers.SYSTEMS}
                 for key in ("engines", "idle_cpu_percent")}}
    text = peers.markdown(result)
    assert "infinity-emb/torch" not in text and "| xmr | 32 |" in text


def test_the_command_line_renders_docker_smokes_report_beside_its_json(tmp_path: Path) -> None:
    answers = {"text_to_image": {"query": "cat", "hits": [
                   {"id": 7, "labels": ["animal", "animal-mammal"], "score": 0.61}]},
               "image_to_text": {"query": "the image of item 7", "texts": ["cat face"]},
               "ingest": [["text without the key", 401], ["text", 201],
                          ["the top hit's image", 200, "existing id 7, created false"]]}
    result = {"command": "make docker-smoke", "base_image": "xmr-base:bookworm",
              "pip_no_index": 1, "no_cache": 0, "threads": 1, "engine": "Docker 20.10, vfs storage",
              "host_network": 1, "machine": "2 CPU cores, x86_64", "build_s": 600.0,
              "build_demo_s": 900.0, "build_cached_steps": [0, 0],
              "build_demo_cached_steps": [31, 39], "image_bytes": 1_402_000_000,
              "demo_image_bytes": 1_441_000_000, "start_to_ready_s": 9.6, "uid": 10001,
              "health": "healthy", "stop_s": 0.7, "exit_code": 143, "run": answers,
              "compose": None}
    (tmp_path / "docker-smoke.json").write_text(json.dumps(result))
    report.main(["docker", str(tmp_path / "docker-smoke.json")])
    text = (tmp_path / "docker-smoke.md").read_text()
    assert "| `xmr:cpu` (the service, no data) | 1,402 MB, built in 600 s |" in text
    assert "1,441 MB, built in 900 s more (31 of its 39 steps from the build cache) |" in text
    assert "| `docker run` to `GET /readyz` 200 | 9.6 s |" in text
    assert '- text-to-image "cat": 7 (animal-mammal, 0.610)\n' in text
    assert "the top hit's image 200 (existing id 7, created false)" in text
    assert "## docker-compose.yml" not in text and "GPU image" in text


def test_a_changed_figure_changes_the_report() -> None:
    result = read("features")
    result["cold"]["images_per_s"] += 1
    assert features.markdown(result) != (RESULTS / "features.md").read_text()


def test_two_modes_render_their_medians_and_ratios() -> None:
    """The committed service run serves each corpus in both modes, repeated: its ratio rows and
    goals are the ratios of the medians over the repeats, recomputed here from the runs."""
    result = read("service")
    text = service_report.markdown(result)
    assert f"{result['repeats']} repeat(s) of the whole sequence" in text

    def median(corpus: str, mode: str, clients: int, figure: str) -> float:
        return statistics.median(r[figure] for r in result["runs"] if (
            r["corpus"], r["mode"], r["clients"]) == (corpus, mode, clients))

    met = {g["goal"]: g["met"] for g in service_report.goals(result)}
    for corpus in {r["corpus"] for r in result["runs"]}:
        p50 = median(corpus, "hybrid", 1, "p50_ms") / median(corpus, "vector", 1, "p50_ms")
        qps = median(corpus, "hybrid", 32, "qps") / median(corpus, "vector", 32, "qps")
        assert f"| {corpus} | {p50:.2f}x | {qps:.2f}x |\n" in text
        assert met[f"{corpus}: hybrid p50 at 1 client <= 1.3x vector-only"] == (p50 <= 1.3)
        assert met[f"{corpus}: hybrid QPS at 32 clients >= 0.8x vector-only"] == (qps >= 0.8)
