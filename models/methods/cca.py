"""`cca`: regularised canonical correlation analysis on the frozen pooled features.

Training-free: `prepare` solves the generalised eigenproblem once on the train part. Each
modality is centred, projected on its canonical directions, and the coordinates are scaled by
the canonical correlations to the power `power` (0 = plain CCA, 1 weights strong directions
most), then unit-normalised for cosine retrieval.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from models.config import TrainConfig
from models.methods.base import Features, Method, MethodDims


class CCAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    reg: float = Field(0.1, gt=0)  # ridge, as a fraction of each covariance's mean eigenvalue
    power: float = Field(1.0, ge=0)


def _inv_sqrt(cov: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(cov)
    return vectors @ torch.diag(values.clamp_min(1e-12) ** -0.5) @ vectors.T


class CCA(Method):
    Options = CCAOptions
    pairs_only = "always (it fits on the pairs)"

    @classmethod
    def learns_from_pairs(cls, options: BaseModel) -> bool:
        return True
    # buffers (register_buffer), declared for the type checker
    image_mean: torch.Tensor
    text_mean: torch.Tensor
    image_dirs: torch.Tensor
    text_dirs: torch.Tensor

    def __init__(self, config: TrainConfig, dims: MethodDims) -> None:
        super().__init__()
        self.opts = CCAOptions(**config.options)
        k = min(config.embed_dim, dims.image, dims.text)
        self.register_buffer("image_mean", torch.zeros(dims.image))
        self.register_buffer("text_mean", torch.zeros(dims.text))
        self.register_buffer("image_dirs", torch.zeros(dims.image, k))
        self.register_buffer("text_dirs", torch.zeros(dims.text, k))

    def prepare(self, images: Features, texts: Features, labels: list[torch.Tensor]) -> None:
        x, y = images["pooled"].double(), texts["pooled"].double()
        self.image_mean.copy_(x.mean(0))
        self.text_mean.copy_(y.mean(0))
        x, y = x - x.mean(0), y - y.mean(0)
        n = len(x) - 1
        cxx, cyy, cxy = x.T @ x / n, y.T @ y / n, x.T @ y / n
        cxx += (
            self.opts.reg
            * torch.trace(cxx)
            / len(cxx)
            * torch.eye(len(cxx), dtype=x.dtype, device=x.device)
        )
        cyy += (
            self.opts.reg
            * torch.trace(cyy)
            / len(cyy)
            * torch.eye(len(cyy), dtype=y.dtype, device=y.device)
        )
        wx, wy = _inv_sqrt(cxx), _inv_sqrt(cyy)
        u, corr, vh = torch.linalg.svd(wx @ cxy @ wy)
        k = self.image_dirs.shape[1]
        scale = corr[:k].clamp_min(0) ** self.opts.power
        self.image_dirs.copy_((wx @ u[:, :k] * scale).float())
        self.text_dirs.copy_((wy @ vh.T[:, :k] * scale).float())

    def embed_images(self, feats: Features) -> torch.Tensor:
        return F.normalize((feats["pooled"] - self.image_mean) @ self.image_dirs, dim=-1)

    def embed_texts(self, feats: Features) -> torch.Tensor:
        return F.normalize((feats["pooled"] - self.text_mean) @ self.text_dirs, dim=-1)

    def losses(
        self,
        images: Features,
        texts: Features,
        labels: list[torch.Tensor],
        progress: float,
        matches: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        raise RuntimeError("cca is fitted in closed form by prepare(); it has no training loss")
