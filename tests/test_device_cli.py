"""One device rule at every entry point, through the real `xmr` command in a child process:
`--device auto` trains and evaluates, and XMR_DEVICE is read by train, eval, index build and
serve (a device no machine has, cuda:99, is refused by each before any work, naming it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import tiny_cache

ROOT = Path(__file__).resolve().parents[1]


def xmr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "XMR_DEVICE"}
    return subprocess.run([sys.executable, "-m", "xmr", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=600, env={**environ, **(env or {})})


@pytest.fixture
def corpus(tiny_run: tuple[Path, Path]) -> Path:
    """The session's tiny corpus; its backbone features are in `tiny_cache`, so the commands
    here spend their time on what they are asked, not on extracting them again."""
    return tiny_run[0]


def test_train_and_eval_take_device_auto(corpus: Path, tiny_run: tuple[Path, Path],
                                         tmp_path: Path) -> None:
    cache = str(tiny_cache(tiny_run[1]))
    trained = xmr("train", "--data", str(corpus), "--method", "linear", "--out",
                  str(tmp_path / "run"), "--epochs", "1", "--cache", cache, "--device", "auto")
    assert trained.returncode == 0, trained.stderr
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    report = tmp_path / "eval.json"
    evaluated = xmr("eval", "--checkpoint", str(checkpoint), "--data", str(corpus), "--json",
                    str(report), "--cache", cache, "--device", "auto")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(report.read_text())["method"] == "linear"


def test_every_command_reads_xmr_device(corpus: Path, tiny_run: tuple[Path, Path],
                                        tmp_path: Path) -> None:
    _, checkpoint = tiny_run
    cache = str(tiny_cache(checkpoint))
    commands = {
        "train": ["train", "--data", str(corpus), "--method", "linear", "--out",
                  str(tmp_path / "run"), "--epochs", "1", "--cache", cache],
        "eval": ["eval", "--checkpoint", str(checkpoint), "--data", str(corpus), "--json",
                 str(tmp_path / "eval.json"), "--cache", cache],
        "index build": ["index", "build", "--checkpoint", str(checkpoint), "--data",
                        str(corpus), "--out", str(tmp_path / "index"), "--no-progress"],
        "serve": ["serve", "--index", str(tmp_path / "index"), "--checkpoint", str(checkpoint),
                  "--port", "0"],
    }
    for name, args in commands.items():
        refused = xmr(*args, env={"XMR_DEVICE": "cuda:99"})
        assert refused.returncode != 0, name
        assert "cuda:99" in refused.stderr, (name, refused.stderr[-2000:])
    assert not (tmp_path / "run").exists() and not (tmp_path / "index").exists()
    assert not (tmp_path / "eval.json").exists()
    # and a device the machine has, from the environment alone
    evaluated = xmr(*commands["eval"], env={"XMR_DEVICE": "cpu"})
    assert evaluated.returncode == 0, evaluated.stderr


def test_a_device_that_is_not_one_is_a_clear_error(corpus: Path, tmp_path: Path) -> None:
    refused = xmr("train", "--data", str(corpus), "--out", str(tmp_path / "run"),
                  env={"XMR_DEVICE": "gpu"})
    assert refused.returncode == 2
    assert "device 'gpu': expected auto, cpu, cuda or cuda:N" in refused.stderr
    assert "Traceback" not in refused.stderr
