"""Self-describing checkpoints: config, weights, label maps, metrics, backbone identity.

Everything is a tensor, str, number, list or dict, so `torch.load(weights_only=True)` reads it
and a checkpoint can never run code on load.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

FORMAT = 1


class CheckpointError(ValueError):
    """A file that is not a checkpoint of this project, or one made for other backbones."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an xmr checkpoint (format {FORMAT})")
    return payload


def checkpoint_id(path: str | Path) -> str:
    """Content hash: an index is tied to exactly the weights that embedded it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
