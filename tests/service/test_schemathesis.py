"""Schemathesis over the service's own OpenAPI document: no request it generates (examples,
coverage, fuzzing, stateful sequences; with the API key, so writes are exercised) may get a
5xx. On a server of its own, since it ingests and deletes at random."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.conftest import Server, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed(tiny_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    with serving(*tiny_run, tmp_path_factory.mktemp("fuzzed")) as server:
        yield server


def test_no_generated_request_gets_a_server_error(fuzzed: Server, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    # One worker: hypothesis describes lambdas with ast.parse, which is not thread-safe on
    # CPython 3.11 ("AST constructor recursion depth mismatch" with --workers > 1).
    done = subprocess.run(
        [st, "run", f"{fuzzed.url}/openapi.json", "--checks", "not_a_server_error",
         "-H", f"Authorization: Bearer {fuzzed.api_key}", "--max-time", "120",
         "--workers", "1", "--request-timeout", "60", "--seed", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert not re.search(r'HTTP/1\.1" 5\d\d', fuzzed.log_text())
    with fuzzed.client() as client:
        assert client.get("/readyz").status_code == 200
