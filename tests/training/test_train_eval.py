"""`xmr train` and `xmr eval` end to end on a tiny imported corpus, and the configurations
that must stop before training starts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.backbones.cache import FeatureCache
from models.checkpoint import load_checkpoint, save_checkpoint
from models.data.corpus import read_corpus
from models.data.images import open_image
from models.inference import Encoder
from xmr.cli import main


@pytest.fixture
def zh_corpus(wikipedia_src_chinese: Path, tmp_path: Path) -> Path:
    out = tmp_path / "zh"
    assert main(["data", "wikipedia", str(wikipedia_src_chinese), str(out)]) == 0
    return out


def train(corpus: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "train",
            "--data",
            str(corpus),
            "--out",
            str(out),
            "--epochs",
            "3",
            "--cache",
            str(out.parent / "cache"),
            "--device",
            "cpu",
            *extra,
        ]
    )


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_chinese_wikipedia_corpus_trains_and_evaluates_with_a_config_choice(
    zh_corpus: Path, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        "method: aaml\ntext_backbone: char-ngram\nbatch_size: 8\n"
        "embed_dim: 16\noptions: {hidden: 32, attn_dim: 16, region_dim: 16}\n",
    )
    run = tmp_path / "run"
    assert train(zh_corpus, run, "--config", str(config), "--seed", "1") == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == "aaml" and metrics["epochs"]
    assert (run / "curves.png").stat().st_size > 0
    report_path = tmp_path / "eval" / "report.json"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(run / "checkpoint.pt"),
                "--data",
                str(zh_corpus),
                "--json",
                str(report_path),
                "--cache",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    for key in ("i2t_map", "t2i_map", "avg_map"):
        assert 0 <= report[key] <= 1
    assert set(report["levels"]) == {"category"}
    assert set(report["recall"]["i2t"]) == {"R@1", "R@5", "R@10"}
    assert report_path.with_suffix(".md").read_text().startswith("# Evaluation")
    assert (tmp_path / "eval" / "report-pr.png").stat().st_size > 0
    # the re-ranker through the service's only import, models.inference
    encoder = Encoder.load(run / "checkpoint.pt")
    assert encoder.can_rerank
    images = [Image.new("RGB", (40, 30), c) for c in ((200, 30, 30), (30, 160, 60))]
    scores = encoder.score_text_to_images("这是一幅油画肖像", images)
    assert scores.shape == (2,) and scores.dtype == "float32"
    assert encoder.score_image_to_texts(images[0], ["油画", "河流", "细胞"]).shape == (3,)
    # what `xmr eval` scored (cached features through Encoder.embed_features) is what serving
    # gives for the same texts and images
    corpus = read_corpus(zh_corpus)
    items = corpus.split("test")
    features = encoder.backbones.features(corpus, items, FeatureCache(tmp_path / "cache"))
    image_rows, text_rows = encoder.embed_features(features)
    fresh = [open_image(corpus.image_path(item)) for item in items]
    np.testing.assert_allclose(text_rows, encoder.encode_texts([i.text for i in items]),
                               atol=2e-3)
    assert encoder.dim == text_rows.shape[1]  # found without running the backbone
    np.testing.assert_allclose(image_rows, encoder.encode_images(fresh), atol=2e-3)


def test_encoder_without_scorer_refuses_to_rerank(zh_corpus: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, "method: cca\ntext_backbone: char-ngram\nembed_dim: 4\n")
    assert train(zh_corpus, tmp_path / "run", "--config", str(config)) == 0
    encoder = Encoder.load(tmp_path / "run" / "checkpoint.pt")
    assert not encoder.can_rerank
    assert encoder.dim == encoder.encode_texts(["油画"]).shape[1]
    with pytest.raises(ValueError, match="cannot re-rank"):
        encoder.score_text_to_images("油画", [Image.new("RGB", (8, 8))])


def test_threads_option_sets_torch_threads(zh_corpus: Path, tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, "method: cca\ntext_backbone: char-ngram\nembed_dim: 4\n")
    default = torch.get_num_threads()
    asked = default + 1  # differs from whatever this process runs with
    try:
        assert train(zh_corpus, tmp_path / "run", "--config", str(config),
                     "--threads", str(asked)) == 0
        assert torch.get_num_threads() == asked
    finally:
        torch.set_num_threads(default)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    with pytest.raises(SystemExit) as stop:
        train(zh_corpus, tmp_path / "bad", "--threads", "0")
    assert stop.value.code == 2 and "--threads: 0: at least 1" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("method: dhaml\nlearning_rate: 0.1\n", "learning_rate"),
        ("method: scan\n", "unknown method"),
        ("method: dhaml\noptions: {metrc: triplet}\n", "metrc"),
        ("method: dhaml\nlevels: [group, subgroup]\n", "do not match the corpus"),
        ("method: dhaml\ntext_backbone: bert\n", "text_backbone"),
        ("method: dhaml\nselect_on: labels_and_keywords\n", "several captions"),
    ],
)
def test_bad_configs_stop_before_training(
    zh_corpus: Path, tmp_path: Path, capsys, config: str, message: str
) -> None:
    path = write_config(tmp_path, config)
    assert train(zh_corpus, tmp_path / "run", "--config", str(path)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_checkpoint_of_another_backbone_is_refused(zh_corpus: Path, tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, "method: cca\ntext_backbone: char-ngram\nembed_dim: 4\n")
    assert train(zh_corpus, tmp_path / "run", "--config", str(config)) == 0
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, replace(load_checkpoint(path), image_backbone="resnet-50"))
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(path),
                "--data",
                str(zh_corpus),
                "--json",
                str(tmp_path / "r.json"),
                "--cache",
                str(tmp_path / "cache"),
            ]
        )
        == 2
    )
    assert "resnet-50" in capsys.readouterr().err
