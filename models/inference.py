"""`Encoder`: a checkpoint turned into float32 (n, d) unit vectors for images and texts.

This is the only module of `models` the service imports: besides `Encoder` it names what a
caller needs to feed it (`open_image`, `ImageError`) and to tell checkpoints apart
(`checkpoint_id`). Query-time inputs are not cached (they are new content); the batch index
job and `xmr eval` pass backbone features read through a FeatureCache.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from models.backbones.image import ImageFeatures
from models.backbones.text import MAX_TOKENS, MiniLM, TextFeatures
from models.checkpoint import CheckpointError, checkpoint_id, load_checkpoint
from models.config import TrainConfig
from models.data.images import ImageError, open_image, to_array
from models.device import Runtime, resolve_device
from models.features import Backbones, FeatureSet
from models.methods import build_method
from models.methods.base import MethodDims
from models.onnx_text import Quant

__all__ = ["CheckpointError", "Encoder", "ImageError", "Runtime", "checkpoint_id", "open_image",
           "resolve_device"]
log = logging.getLogger(__name__)
# What each runtime (models.device.Runtime) runs queries on: torch, or ONNX Runtime for texts
# (models.onnx_text) and images (models.onnx_image); onnx-int8 and onnx-int8-static run an 8-bit
# copy of the text graph (models.onnx_quant: activations scaled per call, or with scales fixed
# at export so a text's vector does not depend on its batch), images stay float. QUANT: the
# copy each 8-bit runtime runs.
QUANT: dict[str, Quant] = {"onnx-int8": "dynamic", "onnx-int8-static": "static"}
EMBED_CHUNK = 512  # rows per forward pass when embedding a whole split


class Encoder:
    def __init__(self, path: Path, device: torch.device, runtime: Runtime = "torch",
                 threads: int | None = None) -> None:
        saved = load_checkpoint(path)
        self.device = device
        self.checkpoint_id = checkpoint_id(path)
        self.config = TrainConfig(**saved.config)
        self.levels: tuple[str, ...] = saved.corpus_levels
        self.label_sets = saved.label_sets
        self.backbones = Backbones.build(self.config.text_backbone, device, saved.text_state,
                                         image_backbone=self.config.image_backbone)
        for side, made, built in (("image", saved.image_backbone, self.backbones.image.id),
                                  ("text", saved.text_backbone, self.backbones.text.id)):
            if made != built:
                raise CheckpointError(
                    f"{path}: made with {side} backbone {made!r}, this build has {built!r}"
                )
        self.method = build_method(
            self.config, MethodDims(saved.image_dim, saved.text_dim, saved.classes)
        )
        self.method.load_state_dict(saved.state_dict)
        self.method.to(device).eval()
        threads = torch.get_num_threads() if threads is None else threads  # for ONNX too
        self.onnx_text = None if runtime == "torch" else self._onnx_text(path, threads, runtime)
        self._runtime: Runtime = "torch" if self.onnx_text is None else runtime
        self._image_graph = (path, threads) if runtime != "torch" else None  # built on first use
        self._onnx_image: Any = None
        self._image_lock = threading.Lock()

    @cached_property
    def dim(self) -> int:
        """The embeddings' width: the method's output for one blank text of the backbone's
        shape (no backbone runs, so a process that reads its features from the cache never
        loads the text model)."""
        width, mask = self.backbones.text.dim, np.zeros((1, MAX_TOKENS), dtype=bool)
        mask[0, 0] = True
        blank = TextFeatures(np.zeros((1, width), np.float32),
                             np.zeros((1, MAX_TOKENS, width), np.float16), mask)
        return int(self.embed_text_features(blank).shape[1])

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu",
             threads: int | None = None, runtime: Runtime = "torch") -> Encoder:
        """`device`: as `resolve_device` takes it. `threads`: torch's intra-op threads, a
        process-wide setting, and ONNX Runtime's per call (None: torch's as they are, which
        OMP_NUM_THREADS sets, for both).
        `runtime`: what runs text queries; the ONNX runtimes fall back to torch, with a
        warning, where the checkpoint or this machine cannot take them."""
        if threads is not None:
            torch.set_num_threads(threads)
        return cls(Path(path), resolve_device(device), runtime, threads)

    @property
    def text_runtime(self) -> Runtime:
        return self._runtime

    def _onnx_text(self, path: Path, threads: int, runtime: Runtime) -> Any:
        """The ONNX text path (models.onnx_text), or None (torch) where it does not apply."""
        if self.device.type != "cpu" or not isinstance(self.backbones.text, MiniLM):
            log.info("text queries run on torch: ONNX covers MiniLM on the CPU only")
            return None
        if self.method.reads_tokens:
            log.info("text queries run on torch: method %r reads token vectors, which the "
                     "ONNX graph does not give", self.method_name)
            return None
        try:
            from models.onnx_text import OnnxText

            return OnnxText.build(path, self.checkpoint_id, self.backbones.text, self.method,
                                  threads, QUANT.get(runtime))
        except Exception as err:  # onnxruntime missing, export failed, outputs differ
            log.warning("text queries run on torch: the ONNX path failed (%s)", err)
            return None

    @property
    def onnx_image(self) -> Any:
        """The ONNX image path (models.onnx_image, float for every ONNX runtime), made on the
        first image this encoder embeds (a service that answers text only never exports it);
        None: torch, where it does not apply or the ONNX path failed."""
        with self._image_lock:
            if self._image_graph is not None:
                path, threads = self._image_graph
                self._image_graph = None
                self._onnx_image = self._build_onnx_image(path, threads)
            return self._onnx_image

    def _build_onnx_image(self, path: Path, threads: int) -> Any:
        if self.device.type != "cpu":
            return None
        try:
            from models.onnx_image import OnnxImage

            return OnnxImage.build(path, self.checkpoint_id, self.backbones.image, self.method,
                                   threads)
        except Exception as err:  # onnxruntime missing, export failed, outputs differ
            log.warning("image queries run on torch: the ONNX path failed (%s)", err)
            return None

    @property
    def image_runtime(self) -> Literal["torch", "onnx"]:
        return "torch" if self.onnx_image is None else "onnx"

    @property
    def method_name(self) -> str:
        return self.config.method

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        if self.onnx_text is not None:
            return self.onnx_text.encode(list(texts))
        return self.embed_text_features(
            self.backbones.text.encode(list(texts), tokens=self.method.reads_tokens))

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB images as given by models.data.images.open_image."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        graph = self.onnx_image
        if graph is not None:
            return graph.encode(self._pixels(images))
        return self.embed_image_features(self.backbones.image.encode(self._pixels(images)))

    def _pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The image backbone's input, at its own resolution."""
        return np.stack([to_array(image, self.backbones.image.size) for image in images])

    # Backbone features (fresh, or read from a FeatureCache by the batch index job) -> vectors.
    # Both encode_* paths and the cached path go through here, so a method's feature transform
    # (e.g. aaml's frozen region PCA) can never be skipped.
    @torch.inference_mode()
    def embed_text_features(self, feats: Any) -> np.ndarray:
        return self.method.embed_texts(self._text_tensors(feats)).float().cpu().numpy()

    @torch.inference_mode()
    def embed_image_features(self, feats: Any) -> np.ndarray:
        return self.method.embed_images(self._image_tensors(feats)).float().cpu().numpy()

    def embed_features(self, features: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
        """(image vectors, text vectors) of a split's backbone features (`xmr eval`), in
        chunks so a large split fits in memory; the same path as every other input."""
        images, texts = [], []
        for start in range(0, len(features), EMBED_CHUNK):
            part = features.subset(np.arange(start, min(start + EMBED_CHUNK, len(features))))
            images.append(self.embed_image_features(
                ImageFeatures(part.image_pooled, part.image_regions)))
            texts.append(self.embed_text_features(
                TextFeatures(part.text_pooled, part.text_tokens, part.text_mask)))
        return np.concatenate(images), np.concatenate(texts)

    def _image_tensors(self, feats: Any) -> dict[str, torch.Tensor]:
        batch = {
            "pooled": torch.from_numpy(feats.pooled).to(self.device).float(),
            "regions": torch.from_numpy(feats.regions).to(self.device).float(),
        }
        return self.method.transform_images(batch)

    def _text_tensors(self, feats: Any) -> dict[str, torch.Tensor]:
        batch = {
            "pooled": torch.from_numpy(feats.pooled).to(self.device).float(),
            "tokens": torch.from_numpy(feats.tokens).to(self.device).float(),
            "mask": torch.from_numpy(feats.mask).to(self.device),
        }
        return self.method.transform_texts(batch)

    # -- re-ranking with a cross-attention scorer (aaml) ------------------------------------------
    @property
    def can_rerank(self) -> bool:
        """True only for checkpoints whose method has a cross-attention scorer."""
        return bool(self.method.can_rerank)

    def _require_rerank(self) -> None:
        if not self.can_rerank:
            raise ValueError(
                f"checkpoint of method {self.method_name!r} has no cross-attention scorer; "
                "it cannot re-rank (only aaml checkpoints trained with attention can)"
            )

    def _image_batch(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        return self._image_tensors(self.backbones.image.encode(self._pixels(images)))

    def _text_batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self._text_tensors(self.backbones.text.encode(list(texts)))

    @torch.inference_mode()
    def score_text_to_images(self, text: str, images: Sequence[Image.Image]) -> np.ndarray:
        """Cross-attention score of one text query against k candidate images, shape (k,)."""
        self._require_rerank()
        if not images:
            return np.zeros(0, dtype=np.float32)
        scores = self.method.pair_scores(self._image_batch(images), self._text_batch([text]))
        return scores[:, 0].float().cpu().numpy()

    @torch.inference_mode()
    def score_image_to_texts(self, image: Image.Image, texts: Sequence[str]) -> np.ndarray:
        """Cross-attention score of one image query against k candidate texts, shape (k,)."""
        self._require_rerank()
        if not texts:
            return np.zeros(0, dtype=np.float32)
        scores = self.method.pair_scores(self._image_batch([image]), self._text_batch(texts))
        return scores[0].float().cpu().numpy()
