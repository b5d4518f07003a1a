"""`Encoder`: a checkpoint turned into float32 (n, d) unit vectors for images and texts.

This is the only module of `models` the service and the index job import. Query-time inputs
are not cached (they are new content); the batch index job may pass a FeatureCache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.checkpoint import CheckpointError, checkpoint_id, load_checkpoint
from models.data.images import to_array
from models.features import Backbones
from models.methods import build_method
from models.methods.base import MethodDims
from models.training.config import TrainConfig


class Encoder:
    def __init__(self, path: Path, device: torch.device) -> None:
        payload = load_checkpoint(path)
        self.device = device
        self.checkpoint_id = checkpoint_id(path)
        self.config = TrainConfig(**payload["config"])
        self.levels: tuple[str, ...] = tuple(payload["levels"])
        self.label_sets = {k: tuple(v) for k, v in payload["label_sets"].items()}
        saved = payload["backbones"]
        self.backbones = Backbones.build(self.config.text_backbone, device, saved["text_state"])
        for side, built in (("image", self.backbones.image.id), ("text", self.backbones.text.id)):
            if saved[side] != built:
                raise CheckpointError(
                    f"{path}: made with {side} backbone {saved[side]!r}, this build has {built!r}"
                )
        dims = payload["dims"]
        self.method = build_method(
            self.config, MethodDims(dims["image"], dims["text"], tuple(dims["classes"]))
        )
        self.method.load_state_dict(payload["state_dict"])
        self.method.to(device).eval()
        self.dim = int(self.encode_texts(["probe"]).shape[1])

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Encoder:
        return cls(Path(path), torch.device(device))

    @property
    def method_name(self) -> str:
        return self.config.method

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        feats = self.backbones.text.encode(list(texts))
        batch = {
            "pooled": torch.from_numpy(feats.pooled).to(self.device),
            "tokens": torch.from_numpy(feats.tokens).to(self.device).float(),
            "mask": torch.from_numpy(feats.mask).to(self.device),
        }
        return self.method.embed_texts(batch).float().cpu().numpy()

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB images as given by models.data.images.open_image."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        feats = self.backbones.image.encode(np.stack([to_array(image) for image in images]))
        batch = {
            "pooled": torch.from_numpy(feats.pooled).to(self.device),
            "regions": torch.from_numpy(feats.regions).to(self.device).float(),
        }
        return self.method.embed_images(batch).float().cpu().numpy()
