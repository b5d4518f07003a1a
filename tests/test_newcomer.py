"""What a new user meets, through the real CLI: `--method` trains the shipped settings (found
inside the package), the README documents labels.json, a bad image stops `xmr train` with its
manifest line (or is skipped), and the smaller points: help texts, settings named as the user
set them. The served side (/docs offline, a quiet log) is in tests/service/test_newcomer_api.py,
the README's own command lines in tests/test_readme_recipes.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from models.config import CONFIGS, default_method
from models.data.corpus import read_corpus
from tests.fixtures import make_wikipedia_layout
from xmr.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def xmr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`xmr ARGS` in a child process, as a user's shell runs it."""
    return subprocess.run([sys.executable, "-m", "xmr", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def trained_config(run: Path) -> dict:
    return dict(torch.load(run / "checkpoint.pt", weights_only=False)["config"])


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 pairs in 3 categories, one caption per image (the Wikipedia layout, imported)."""
    root = tmp_path_factory.mktemp("newcomer-labelled")
    assert main(["data", "wikipedia", str(make_wikipedia_layout(root / "src")),
                 str(root / "corpus")]) == 0
    return root / "corpus"


def train(corpus: Path, run: Path, *extra: str) -> int:
    return main(["train", "--data", str(corpus), "--out", str(run), "--epochs", "2",
                 "--cache", str(run.parent / "cache"), "--device", "cpu", *extra])


# -- 1. --method NAME trains the shipped settings; the default is the default config's ----------

def test_method_trains_its_shipped_settings(labelled: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert train(labelled, tmp_path / "triplet", "--method", "triplet") == 0
    config = trained_config(tmp_path / "triplet")
    assert config["method"] == "triplet" and config["options"]["hardest"] is False
    assert config["epochs"] == 2 and config["patience"] == 8  # --epochs over the file's 40
    # the shipped settings select on keywords, which needs several captions per image
    assert config["select_on"] == "labels"
    assert "has one caption: selecting on labels" in capsys.readouterr().err


def test_no_method_trains_the_default_config(labelled: Path, tmp_path: Path) -> None:
    assert default_method() == "dhaml"
    assert train(labelled, tmp_path / "default") == 0
    config = trained_config(tmp_path / "default")
    assert config["method"] == "dhaml"
    assert config["options"]["instance_level"] is True and config["options"]["instance_weight"] > 0


def test_config_file_overrides_the_shipped_settings(labelled: Path, tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("method: cca\ntext_backbone: char-ngram\nembed_dim: 4\n")
    assert train(labelled, tmp_path / "cca", "--config", str(tmp_path / "mine.yaml")) == 0
    config = trained_config(tmp_path / "cca")
    assert (config["method"], config["embed_dim"]) == ("cca", 4)


def test_unknown_method_names_the_known_ones(labelled: Path, tmp_path: Path) -> None:
    done = xmr("train", "--data", str(labelled), "--method", "clip", "--out",
               str(tmp_path / "run"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "unknown method 'clip'" in done.stderr and "dhaml" in done.stderr
    assert not (tmp_path / "run").exists()


def test_the_configs_ship_inside_the_wheel(tmp_path: Path) -> None:
    """An installed `xmr` has no repository beside it: the configs must be package data."""
    assert (ROOT / "configs").resolve() == CONFIGS.resolve()  # one source, linked from the repo
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, timeout=300,
                   capture_output=True)
    (wheel,) = tmp_path.glob("xmr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"models/configs/{p.name}" for p in CONFIGS.glob("*.yaml")}
    assert "models/configs/default.yaml" in shipped and shipped <= names


# -- 2. labels.json is documented, labelled and label-free ------------------------------------

def test_readme_documents_labels_json(tmp_path: Path) -> None:
    section = README.split("## Your own data")[1].split("\n## ")[0]
    row, labels = re.findall(r"```json\n(.+?)\n```", section)
    for name, doc in (("labelled", labels), ("label-free", '{"levels": []}')):
        assert doc in section
        corpus = tmp_path / name
        corpus.mkdir()
        (corpus / "labels.json").write_text(doc)
        manifest = json.loads(row)
        if name == "label-free":
            del manifest["labels"]
        else:  # the row's labels are among the documented values
            assert manifest["labels"][1] in json.loads(labels)["labels"]["subgroup"]
        (corpus / "manifest.jsonl").write_text(json.dumps(manifest) + "\n")
        assert read_corpus(corpus).labelled is (name == "labelled")


def test_a_wrong_labels_file_says_what_it_expects(labelled: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "manifest.jsonl").write_text((labelled / "manifest.jsonl").read_text())
    (corpus / "labels.json").write_text('{"levels": ["category"], "values": {}}')
    done = xmr("train", "--data", str(corpus), "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no key 'labels'" in done.stderr and '{"levels": []}' in done.stderr


# -- 3. a bad image at train time: one line naming the manifest line, or --skip-invalid --------

def corpus_with_bad_images(labelled: Path, root: Path) -> tuple[Path, list[str]]:
    """A copy of `labelled` where one image is missing and another is not an image."""
    corpus = root / "bad-corpus"
    subprocess.run(["cp", "-r", str(labelled), str(corpus)], check=True)
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    train_rows = [row for row in rows if row["split"] == "train"]
    (corpus / train_rows[0]["image"]).unlink()
    (corpus / train_rows[1]["image"]).write_bytes(b"not an image at all")
    lines = [f"manifest.jsonl:{rows.index(row) + 1}: image {row['image']!r}"
             for row in train_rows[:2]]
    return corpus, lines


def test_a_bad_image_stops_training_with_its_manifest_line(labelled: Path,
                                                          tmp_path: Path) -> None:
    corpus, lines = corpus_with_bad_images(labelled, tmp_path)
    done = xmr("train", "--data", str(corpus), "--method", "linear", "--out",
               str(tmp_path / "run"), "--cache", str(tmp_path / "cache"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and lines[0] in error[0] and "no such file" in error[0]
    assert "--skip-invalid" in done.stderr and not (tmp_path / "run").exists()


def test_skip_invalid_trains_without_the_bad_images(labelled: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    corpus, lines = corpus_with_bad_images(labelled, tmp_path)
    assert train(corpus, tmp_path / "run", "--method", "linear", "--skip-invalid") == 0
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 2 and all(any(w in s for s in skipped) for w in lines)
    assert "not a readable image" in err and "2 invalid item(s) left out" in err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_val"] == len(read_corpus(corpus).split("train")) - 2


def test_index_build_names_a_missing_image_before_loading_anything(
    labelled: Path, tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    corpus, lines = corpus_with_bad_images(labelled, tmp_path)
    done = xmr("index", "build", "--checkpoint", str(tiny_run[1]), "--data", str(corpus),
               "--out", str(tmp_path / "index"), "--no-progress")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(f"{lines[0].split(': ')[1]}: no such file")
    assert not (tmp_path / "index").exists()


# -- 4. the smaller points: settings named as the user set them, help texts ------------------

@pytest.mark.parametrize(("env", "flags", "named"), [
    ({"XMR_MAX_K": "0"}, [], "XMR_MAX_K=0"),
    ({"XMR_BATCH_WAIT_MS": "soon"}, [], "XMR_BATCH_WAIT_MS=soon"),
    ({}, ["--port", "99999"], "--port=99999"),
])
def test_a_bad_setting_names_what_the_user_set(env: dict[str, str], flags: list[str],
                                               named: str) -> None:
    done = xmr("serve", *flags, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: {named}: ")
    assert "max_k" not in done.stderr and "batch_wait_ms" not in done.stderr


def test_help_speaks_to_users() -> None:
    top = xmr("--help").stdout
    assert "deferred" not in top and "FAISS" not in top  # the note for developers
    assert "train a method" in top
    train_help = " ".join(xmr("train", "--help").stdout.split())
    assert "(default: dhaml, with the settings of configs/default.yaml)" in train_help
    for flag, words in (("--epochs N", "most training epochs"), ("--seed S", "seed of")):
        assert re.search(rf"{re.escape(flag)} {words}", train_help), flag


def test_readme_describes_score_and_similarity() -> None:
    answer = README.split("A search answers")[1].split("\n\n")[0]
    assert '"similarity"' in answer and "`similarity`" in answer and "`score` is" in answer
