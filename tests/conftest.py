"""Shared fixtures: tiny seeded corpora made on the fly (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import make_wikipedia_layout, train_tiny_run


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """torch on one thread in the test process: its models and batches are tiny, so a second
    thread only waits on the first, or spins against the other processes of a shared machine
    (the servers and commands the tests start). A child process keeps its own default."""
    import torch

    torch.set_num_threads(1)


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
