"""Shared fixtures: tiny seeded corpora made on the fly (nothing downloaded)."""

from __future__ import annotations

import os
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
    """(corpus dir, checkpoint): see tests.fixtures.train_tiny_run; trained once per session."""
    return train_tiny_run(tmp_path_factory.mktemp("tiny-run"))
