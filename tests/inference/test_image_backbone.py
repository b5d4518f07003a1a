"""The image backbone a config chooses travels in the checkpoint: training, the feature cache
and the encoder the service loads all use the same one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.backbones.cache import FeatureCache
from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from models.data.corpus import read_corpus
from models.data.images import open_image
from models.inference import Encoder
from xmr.cli import main


@pytest.fixture(scope="module")
def lite2_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(corpus, checkpoint, cache) of a tiny run on EfficientNet-Lite2 features."""
    from tests.fixtures import make_wikipedia_layout

    root = tmp_path_factory.mktemp("lite2")
    corpus = root / "corpus"
    assert main(["data", "wikipedia", str(make_wikipedia_layout(root / "src")), str(corpus)]) == 0
    config = root / "config.yaml"
    config.write_text("method: cca\ntext_backbone: char-ngram\nembed_dim: 4\n"
                      "image_backbone: efficientnet-lite2\n", encoding="utf-8")
    assert main(["train", "--data", str(corpus), "--out", str(root / "run"), "--config",
                 str(config), "--cache", str(root / "cache"), "--device", "cpu"]) == 0
    return corpus, root / "run" / "checkpoint.pt", root / "cache"


def test_checkpoint_carries_the_image_backbone(lite2_run: tuple[Path, Path, Path]) -> None:
    _, checkpoint, cache = lite2_run
    saved = load_checkpoint(checkpoint)
    assert saved.config["image_backbone"] == "efficientnet-lite2"
    assert saved.image_backbone == "efficientnet-lite2"
    assert (cache / "efficientnet-lite2.sqlite").exists()
    assert not (cache / "efficientnet-lite0.sqlite").exists()


def test_encoder_encodes_images_with_the_checkpoints_backbone(
    lite2_run: tuple[Path, Path, Path],
) -> None:
    corpus_dir, checkpoint, cache = lite2_run
    encoder = Encoder.load(checkpoint)
    assert (encoder.backbones.image.id, encoder.backbones.image.size) == ("efficientnet-lite2", 260)
    corpus = read_corpus(corpus_dir)
    items = corpus.split("test")
    features = encoder.backbones.features(corpus, items, FeatureCache(cache), progress=False)
    assert features.image_regions.shape[1:] == (81, 1280)  # Lite2's 9x9 map
    cached, _ = encoder.embed_features(features)  # what training and `xmr eval` saw
    fresh = encoder.encode_images([open_image(corpus.image_path(item)) for item in items])
    np.testing.assert_allclose(fresh, cached, atol=2e-3)


def test_a_checkpoint_whose_config_names_another_backbone_is_refused(
    lite2_run: tuple[Path, Path, Path], tmp_path: Path,
) -> None:
    saved = load_checkpoint(lite2_run[1])
    config = {**saved.config, "image_backbone": "efficientnet-lite0"}
    save_checkpoint(tmp_path / "edited.pt", replace(saved, config=config))
    with pytest.raises(CheckpointError, match="efficientnet-lite2"):
        Encoder.load(tmp_path / "edited.pt")
