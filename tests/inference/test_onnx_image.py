"""The image query path on ONNX Runtime (models.onnx_image) against the torch path: the same
vectors for the tiny checkpoint's images at several batch sizes, and for aaml's attention
head, which reads the region map; a graph made once per checkpoint and reused; torch kept
where the ONNX path fails."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models import onnx_graphs
from models.backbones.image import EfficientNetLite
from models.config import TrainConfig
from models.data.corpus import read_corpus
from models.data.images import open_image
from models.inference import Encoder
from models.methods import build_method
from models.methods.base import MethodDims
from models.onnx_image import OnnxImage, onnx_path


@pytest.fixture
def checkpoint(tiny_run: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the tiny checkpoint, so each test makes its own export beside it."""
    return Path(shutil.copy(tiny_run[1], tmp_path / "checkpoint.pt"))


def corpus_images(corpus: Path) -> list:
    found = read_corpus(corpus)
    return [open_image(found.image_path(item)) for item in found.items if item.image]


def test_onnx_images_equal_torch_and_the_graph_is_reused(
        checkpoint: Path, tiny_run: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    images = corpus_images(tiny_run[0])
    on_torch = Encoder.load(checkpoint, "cpu", runtime="torch")
    caplog.set_level(logging.INFO, logger="models.onnx_image")
    on_onnx = Encoder.load(checkpoint, "cpu", runtime="onnx")
    assert "exporting the image graph" not in caplog.text  # not until an image is embedded
    assert (on_torch.image_runtime, on_onnx.image_runtime) == ("torch", "onnx")
    assert "exporting the image graph" in caplog.text and onnx_path(checkpoint).is_file()
    for size in (1, 5, len(images)):
        want, got = on_torch.encode_images(images[:size]), on_onnx.encode_images(images[:size])
        assert np.abs(got - want).max() <= 1e-4
    caplog.clear()
    again = Encoder.load(checkpoint, "cpu", runtime="onnx")
    assert again.image_runtime == "onnx" and "exporting" not in caplog.text


def test_attention_over_regions_exports_too(tmp_path: Path) -> None:
    """aaml's image head reads the PCA-reduced region map (rounded to float16, as cached)."""
    backbone = EfficientNetLite()
    config = TrainConfig.model_validate({"method": "aaml", "embed_dim": 16,
                                         "options": {"attn_dim": 16, "region_dim": 16}})
    method = build_method(config, MethodDims(EfficientNetLite.dim, 384, (2,)))
    rng = np.random.default_rng(0)
    pixels = rng.uniform(-1, 1, (4, 3, backbone.size, backbone.size)).astype(np.float32)
    with torch.inference_mode():
        feats = backbone.encode(pixels)
    images = {"pooled": torch.from_numpy(feats.pooled),
              "regions": torch.from_numpy(feats.regions).float()}
    texts = {"pooled": torch.randn(4, 384), "tokens": torch.randn(4, 3, 384),
             "mask": torch.ones(4, 3, dtype=torch.bool)}
    method.prepare(images, texts, [torch.tensor([0, 1, 0, 1])])
    method.eval()
    graph = OnnxImage.build(tmp_path / "aaml.pt", "aaml-test", backbone, method, threads=1)
    with torch.inference_mode():
        want = method.embed_images(method.transform_images(images)).numpy()
    assert np.abs(graph.encode(pixels) - want).max() <= 1e-4


def test_torch_is_kept_where_the_onnx_path_fails(checkpoint: Path, tiny_run: tuple[Path, Path],
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(onnx_graphs, "export", broken)
    encoder = Encoder.load(checkpoint, "cpu", runtime="onnx")
    image = corpus_images(tiny_run[0])[:1]
    want = Encoder.load(checkpoint, "cpu", runtime="torch").encode_images(image)
    assert np.array_equal(encoder.encode_images(image), want)
    assert encoder.image_runtime == "torch" and "exporter broke" in caplog.text
