"""The README's command lines, run as written: every `xmr` and `curl` line of the code blocks of
its "Your own data", "Command line" and "REST API" sections.

- "Your own data": the recipe from a corpus to a running service, in a folder holding
  `corpora/mine`, a label-free corpus imported from a Karpathy layout made here.
- "Command line": a synopsis, so each line's flags are checked against `xmr ... --help`.
- "REST API": every curl line against a real `xmr serve`, in a folder whose
  `artifacts/data/openmoji` is a small corpus shaped like the demo's (its levels, `1F431` the
  cat face), trained and indexed here; `photo.jpg` and `shoe.jpg` are made here too. Only the
  address of the server differs from the README (a free port, not 8000).

A line that cannot run as written is a README bug."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from models.inference import Encoder
from service.settings import Settings
from tests.fixtures import make_karpathy_layout
from xmr.cli import main as xmr

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    return README.split(f"\n## {title}\n")[1].split("\n## ")[0]


def command_lines(text: str, *programs: str) -> list[str]:
    """The lines of the fenced code blocks that start with one of `programs`, each joined with
    its continuation lines (a trailing backslash, or an indented line after it)."""
    lines: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for raw in block.splitlines():
            if lines and (lines[-1].endswith("\\") or (raw.startswith(" ") and raw.strip())):
                lines[-1] = lines[-1].rstrip("\\").rstrip() + " " + raw.strip()
            elif raw.split(" ")[0] in programs:
                lines.append(raw.strip())
            elif lines and not raw.startswith(" "):
                lines.append("")  # another command: the next indented line is not ours
    return [line for line in lines if line]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Shell:
    """Runs README lines with bash in one folder, `xmr` on the PATH as this checkout's."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.url = folder, f"http://127.0.0.1:{port}"
        bin_dir = folder / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        (bin_dir / "xmr").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m xmr "$@"\n')
        (bin_dir / "xmr").chmod(0o755)
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "PYTHONPATH": str(ROOT), "XMR_PORT": str(port), "URL": self.url}
        self.env.pop("XMR_API_KEY", None)

    def run(self, line: str, timeout: float = 300) -> str:
        done = subprocess.run(["bash", "-c", line], cwd=self.folder, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, f"{line}\n{done.stderr[-3000:]}"
        return done.stdout

    def serve(self, line: str) -> Iterator[subprocess.Popen[bytes]]:
        log = (self.folder / "serve.log").open("wb")
        process = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=self.folder, env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                assert process.poll() is None, (self.folder / "serve.log").read_text()[-3000:]
                try:
                    if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            yield process
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- "Your own data" ---------------------------------------------------------------------------

def test_your_own_data_recipe_runs_as_written(tmp_path: Path) -> None:
    lines = command_lines(section("Your own data"), "xmr", "curl")
    assert [line.split()[:2] for line in lines] == [
        ["xmr", "train"], ["xmr", "eval"], ["xmr", "index"], ["xmr", "serve"]]
    shell = Shell(tmp_path, free_port())
    assert xmr(["data", "captions", str(make_karpathy_layout(tmp_path / "src")),
                str(tmp_path / "corpora/mine")]) == 0  # the corpus the recipe starts from
    for line in lines[:-1]:
        shell.run(line)
    assert json.loads((tmp_path / "runs/mine/eval.json").read_text())["recall"]["i2t"]
    for _ in shell.serve(lines[-1]):
        answer = httpx.post(f"{shell.url}/v1/search/text-to-image",
                            json={"text": "a red bus", "k": 2}, timeout=60)
        assert answer.status_code == 200 and len(answer.json()["results"]) == 2


# -- "Command line" ----------------------------------------------------------------------------

def test_command_line_synopsis_matches_each_parser(tmp_path: Path) -> None:
    shell = Shell(tmp_path, free_port())
    lines = command_lines(section("Command line"), "xmr")
    assert len(lines) >= 6
    for line in lines:
        words = line.split()
        command = words[: next(n for n, w in enumerate(words) if not re.fullmatch("[a-z]+", w))]
        documented = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line))
        real = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", shell.run(" ".join(command)
                                                                    + " --help")))
        assert documented == real - {"--help"}, (line, documented ^ (real - {"--help"}))


# -- "REST API" --------------------------------------------------------------------------------

EMOJI = [  # id, name, group, subgroup, colour
    ("1F431", "cat face", "Animals & Nature", "animal-mammal", (230, 160, 40)),
    ("1F436", "dog face", "Animals & Nature", "animal-mammal", (180, 120, 60)),
    ("1F42D", "mouse face", "Animals & Nature", "animal-mammal", (150, 150, 150)),
    ("1F426", "bird", "Animals & Nature", "animal-bird", (60, 120, 220)),
    ("1F427", "penguin", "Animals & Nature", "animal-bird", (20, 20, 30)),
    ("1F985", "eagle", "Animals & Nature", "animal-bird", (120, 80, 40)),
    ("1F34E", "red apple", "Food & Drink", "food-fruit", (220, 30, 30)),
    ("1F34C", "banana", "Food & Drink", "food-fruit", (240, 220, 60)),
    ("1F347", "grapes", "Food & Drink", "food-fruit", (120, 40, 140)),
    ("1F353", "strawberry", "Food & Drink", "food-fruit", (230, 40, 70)),
    ("1F354", "hamburger", "Food & Drink", "food-prepared", (170, 100, 40)),
    ("1F355", "pizza", "Food & Drink", "food-prepared", (240, 180, 70)),
    ("1F32D", "hot dog", "Food & Drink", "food-prepared", (200, 90, 50)),
    ("1F600", "grinning face", "Smileys & Emotion", "face-smiling", (250, 210, 40)),
    ("1F603", "grinning face with big eyes", "Smileys & Emotion", "face-smiling", (250, 200, 60)),
    ("1F60A", "smiling face with smiling eyes", "Smileys & Emotion", "face-smiling",
     (245, 190, 50)),
    ("1F622", "crying face", "Smileys & Emotion", "face-concerned", (120, 170, 230)),
    ("1F620", "angry face", "Smileys & Emotion", "face-concerned", (230, 80, 40)),
    ("1F61F", "worried face", "Smileys & Emotion", "face-concerned", (200, 180, 90)),
    ("1F98A", "fox", "Animals & Nature", "animal-mammal", (230, 110, 30)),
    ("1F95D", "kiwi fruit", "Food & Drink", "food-fruit", (110, 170, 50)),
    ("1F32E", "taco", "Food & Drink", "food-prepared", (220, 170, 80)),
    ("1F60D", "smiling face with heart-eyes", "Smileys & Emotion", "face-smiling",
     (250, 120, 120)),
    ("1F628", "fearful face", "Smileys & Emotion", "face-concerned", (150, 160, 200)),
]


def make_demo_shaped_corpus(root: Path) -> Path:
    """24 emoji-like pairs at two levels, named as the demo's (ids, groups), every fourth
    in test."""
    (root / "images").mkdir(parents=True)
    rows, labels = [], {"group": [], "subgroup": []}
    for n, (hex_id, name, group, subgroup, colour) in enumerate(EMOJI):
        image = Image.new("RGB", (72, 72), (255, 255, 255))
        image.paste(colour, (8 + n % 5, 8, 64, 64 - n % 7))
        image.save(root / "images" / f"{hex_id}.png")
        rows.append({"id": hex_id, "image": f"images/{hex_id}.png", "text": name,
                     "labels": [group, subgroup], "split": "test" if n % 4 == 3 else "train"})
        for level, value in zip(("group", "subgroup"), (group, subgroup), strict=True):
            if value not in labels[level]:
                labels[level].append(value)
    (root / "labels.json").write_text(json.dumps({"levels": ["group", "subgroup"],
                                                  "labels": labels}))
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    """The server the curl lines talk to. Its checkpoint, index and the ONNX graphs the server
    runs are made in this process (they are no README line; a child process each would only
    load the backbones again); `xmr serve` runs as a user starts it."""
    folder = tmp_path_factory.mktemp("readme-rest")
    shell = Shell(folder, free_port())
    corpus = make_demo_shaped_corpus(folder / "artifacts/data/openmoji")
    run = folder / "run"
    assert xmr(["train", "--data", str(corpus), "--method", "linear", "--epochs", "3",
                "--out", str(run), "--cache", str(folder / "artifacts/cache")]) == 0
    assert xmr(["index", "build", "--checkpoint", str(run / "checkpoint.pt"), "--data",
                str(corpus), "--out", str(folder / "index"), "--no-progress",
                "--cache", str(folder / "artifacts/cache")]) == 0  # as the recipe above
    runtime = Settings().encoder_runtime
    encoder = Encoder.load(run / "checkpoint.pt", runtime=runtime)
    encoder.encode_images([Image.new("RGB", (8, 8))])  # the image graph is made on first use
    assert (encoder.text_runtime, encoder.image_runtime) == (runtime, "onnx")
    Image.new("RGB", (80, 60), (200, 120, 60)).save(folder / "photo.jpg")
    Image.new("RGB", (80, 60), (40, 60, 200)).save(folder / "shoe.jpg")
    for _ in shell.serve("xmr serve --index index --checkpoint run/checkpoint.pt"):
        yield shell


def test_rest_api_curl_lines_run_as_written(rest_server: Shell) -> None:
    text = section("REST API")
    assert "URL=http://127.0.0.1:8000\n" in text  # the shell's URL points at the test server
    lines = command_lines(text, "curl")
    assert len(lines) >= 15
    for line in lines:
        out = rest_server.run(f"{line} -w '\\n%{{http_code}}'", timeout=120)
        body, _, status = out.rpartition("\n")
        assert status.isdigit() and int(status) < 400, (line, status, body[:500])
        if "/v1/jobs" in line:
            wait_for_job(rest_server.url, json.loads(body)["id"])


def wait_for_job(url: str, job_id: str) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
        if job["state"] not in ("queued", "running"):
            assert job["state"] == "succeeded", job
            return
        time.sleep(1)
    raise AssertionError(f"job {job_id} still running")
