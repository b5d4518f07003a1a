"""The image query path on ONNX Runtime: EfficientNet-Lite's feature map, its pooling, the
method's frozen transform and its image head as one graph, exported once per checkpoint and
cached beside it (`checkpoint.pt` -> `checkpoint.image.onnx`, tagged as models.onnx_graphs
says). The graph keeps the torch path's rounding of the region map to float16 (the cached
features' precision), and is checked against the torch path on probe images before use.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models import onnx_graphs as graphs
from models.backbones.image import EfficientNetLite
from models.methods.base import Method

log = logging.getLogger(__name__)
KEY = "xmr_image_graph"
# Bump when the exported graph changes for the same checkpoint, so old caches are rebuilt.
EXPORT_VERSION = "1"
TOLERANCE = 1e-4  # max abs difference from the torch path on the probe images, or no ONNX


class ImageGraph(nn.Module):
    """Pixels (`models.data.images.to_array`) -> the method's unit image embeddings."""

    def __init__(self, backbone: EfficientNetLite, method: Method) -> None:
        super().__init__()
        self.net, self.method = backbone.net, method

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        regions = self.net.extract_features(pixels).flatten(2).transpose(1, 2)
        feats = {"pooled": regions.mean(dim=1), "regions": regions.half().float()}
        return self.method.embed_images(self.method.transform_images(feats))


def onnx_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".image.onnx")


class OnnxImage:
    """Pixels -> the method's unit image embeddings through an ONNX Runtime session."""

    def __init__(self, session: Any) -> None:
        self.session = session

    @classmethod
    def build(cls, checkpoint: Path, checkpoint_id: str, backbone: EfficientNetLite,
              method: Method, threads: int | None) -> OnnxImage:
        """The cached graph of `checkpoint` (exported now when missing or made for another
        checkpoint), checked against the torch path on probe images."""
        graph = ImageGraph(backbone, method).eval()
        probe = torch.from_numpy(_probe_pixels(backbone.size))
        tag, path = f"{checkpoint_id}:{EXPORT_VERSION}", onnx_path(checkpoint)
        def make() -> Any:
            log.info("exporting the image graph of %s to %s", checkpoint, path)
            graphs.export(graph, (probe,), path, KEY, tag, ["pixels"],
                          {"pixels": {0: "batch"}, "embedding": {0: "batch"}})
            return graphs.session(path, threads)

        image = cls(graphs.tagged_or_made(path, KEY, tag, threads, make))
        with torch.inference_mode():
            want = graph(probe).float().numpy()
        got = image.encode(probe.numpy())
        if not np.abs(got - want).max() <= TOLERANCE:
            raise ValueError(f"ONNX image graph differs from torch by {np.abs(got - want).max()}")
        return image

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        found = self.session.run(None, {"pixels": np.ascontiguousarray(pixels, np.float32)})
        return np.asarray(found[0], dtype=np.float32)


def _probe_pixels(size: int) -> np.ndarray:
    """Two deterministic images in the backbone's input range: a gradient and its mirror."""
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    first = np.stack([np.add.outer(ramp, ramp) / 2, np.outer(ramp, ramp), np.tile(ramp, (size, 1))])
    return np.stack([first, first[:, ::-1, ::-1]]).astype(np.float32)
