"""Shared fixtures: tiny seeded corpora made on the fly (nothing downloaded)."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest

from tests.fixtures import make_wikipedia_layout, train_tiny_run


def pytest_configure(config: pytest.Config) -> None:
    """OpenMP (torch, FAISS, BLAS) on one thread, in the test process and in every command and
    server it starts (set before any of them loads): their models and batches are tiny, so a
    second thread only waits at each barrier, and on a machine whose cores the tests' own
    processes share it spins against them (as `xmr train --threads` says of training). An
    OMP_NUM_THREADS already set is kept."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def wikipedia_src(tmp_path: Path) -> Path:
    return make_wikipedia_layout(tmp_path / "wiki-src")


@pytest.fixture
def wikipedia_src_chinese(tmp_path: Path) -> Path:
    return make_wikipedia_layout(tmp_path / "wiki-zh", chinese=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(corpus dir, checkpoint): see tests.fixtures.train_tiny_run; trained once per test run.
    The workers of `pytest -n` share it (and the graphs exported beside it): the first to ask
    trains it in their common temporary folder while the others wait on its lock. Tests that
    change a checkpoint or its graphs work on a copy."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return train_tiny_run(tmp_path_factory.mktemp("tiny-run"))
    root = tmp_path_factory.getbasetemp().parent / "tiny-run"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "trained").exists():
            shutil.rmtree(root, ignore_errors=True)  # what a worker that failed half-way left
            train_tiny_run(root)
            (root / "trained").touch()
    return root / "corpus", root / "run" / "checkpoint.pt"
