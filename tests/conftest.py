"""Shared fixtures: tiny seeded corpora made on the fly (nothing downloaded)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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
    with locked(Path(f"{root}.lock")):
        if not (root / "trained").exists():
            shutil.rmtree(root, ignore_errors=True)  # what a worker that failed half-way left
            train_tiny_run(root)
            (root / "trained").touch()
    return root / "corpus", root / "run" / "checkpoint.pt"


@pytest.fixture(scope="session")
def tiny_exported(tiny_run: tuple[Path, Path]) -> tuple[Path, Path]:
    """The tiny run with its ONNX text graphs made beside the checkpoint: the float graph and
    the 8-bit copy of each 8-bit runtime, made once for the whole run (under a lock: the
    workers of `pytest -n` share them). Servers over the tiny run start from it, so none
    exports at its start; tests that only read graphs start from a `copy_run` of it."""
    from models.inference import QUANT, Encoder

    checkpoint = tiny_run[1]
    with locked(checkpoint.with_suffix(".lock")):
        for runtime in QUANT:  # each makes the float graph first, when it is missing
            assert Encoder.load(checkpoint, "cpu", runtime=runtime).text_runtime == runtime
    return tiny_run


def copy_run(checkpoint: Path, folder: Path) -> Path:
    """A copy of `checkpoint` in `folder` with the graphs made beside it; returns the copy."""
    folder.mkdir(parents=True, exist_ok=True)
    for made in (checkpoint, *checkpoint.parent.glob(f"{checkpoint.stem}.*.onnx")):
        shutil.copy(made, folder / made.name)
    return folder / checkpoint.name


@contextmanager
def locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
