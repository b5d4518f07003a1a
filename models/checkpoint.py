"""Self-describing checkpoints: config, weights, label maps, metrics, backbone identity.

`Checkpoint` is the schema, written by the trainer (`save_checkpoint`) and read by everything
else (`load_checkpoint`). On disk it is a dict of tensors, strings, numbers, lists and dicts, so
`torch.load(weights_only=True)` reads it and a checkpoint can never run code on load.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT = 1


class CheckpointError(ValueError):
    """A file that is not a checkpoint of this project, or one made for other backbones."""


@dataclass(frozen=True)
class Checkpoint:
    config: dict[str, Any]  # models.config.TrainConfig, dumped
    state_dict: dict[str, torch.Tensor]  # the method's weights
    image_dim: int  # the backbones' feature widths the method was built for
    text_dim: int
    classes: tuple[int, ...]  # classes per level trained on
    levels: tuple[str, ...]  # the levels trained on, coarse to fine (`classes` follow them)
    corpus_levels: tuple[str, ...]  # every level of the corpus
    label_sets: dict[str, tuple[str, ...]]  # level -> its label values
    image_backbone: str  # backbone ids: a checkpoint only runs on the backbones it was made on
    text_backbone: str
    text_state: dict[str, Any] | None = None  # a fitted text backbone's state (char-ngram)
    metrics: dict[str, Any] = field(default_factory=dict)  # the run's selection scores

    def payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": self.config,
            "state_dict": self.state_dict,
            "dims": {"image": self.image_dim, "text": self.text_dim,
                     "classes": list(self.classes)},
            "levels": list(self.levels),
            "corpus_levels": list(self.corpus_levels),
            "label_sets": {level: list(names) for level, names in self.label_sets.items()},
            "backbones": {"image": self.image_backbone, "text": self.text_backbone,
                          "text_state": self.text_state},
            "metrics": self.metrics,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Checkpoint:
        dims, backbones = payload["dims"], payload["backbones"]
        return cls(
            config=dict(payload["config"]),
            state_dict=dict(payload["state_dict"]),
            image_dim=int(dims["image"]),
            text_dim=int(dims["text"]),
            classes=tuple(int(n) for n in dims["classes"]),
            levels=tuple(payload["levels"]),
            corpus_levels=tuple(payload.get("corpus_levels", payload["levels"])),
            label_sets={k: tuple(v) for k, v in payload["label_sets"].items()},
            image_backbone=str(backbones["image"]),
            text_backbone=str(backbones["text"]),
            text_state=backbones.get("text_state"),
            metrics=dict(payload.get("metrics", {})),
        )


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(checkpoint.payload(), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an xmr checkpoint (format {FORMAT})")
    try:
        return Checkpoint.from_payload(payload)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: an xmr checkpoint without {err}") from err


def checkpoint_id(path: str | Path) -> str:
    """Content hash: an index is tied to exactly the weights that embedded it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
