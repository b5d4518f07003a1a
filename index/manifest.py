"""The manifest that ties one index generation to one checkpoint and one dimension.

Vectors from two checkpoints live in unrelated spaces: searching one with the other's queries
returns confident nonsense, so opening a generation with another encoder fails loudly instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from index.fsutil import atomic_write_text

MANIFEST = "manifest.json"
FORMAT = 1


class ManifestMismatch(ValueError):
    """An index directory opened with an encoder of another checkpoint or dimension."""


@dataclass(frozen=True)
class Manifest:
    checkpoint_id: str
    dim: int
    levels: tuple[str, ...] = ()
    format: int = FORMAT
    extra: dict = field(default_factory=dict)
    # Per modality, how its index searches: the tuned parameter and the recall it measured
    # (index.tuning.Tuning); empty where a manifest records none.
    search: dict = field(default_factory=dict)
    # The metadata fields whose words hybrid search matches beside each item's text
    # (index.words), and how it combines its signals (models.fusion.Fusion.as_dict; empty:
    # the default fusion).
    text_fields: tuple[str, ...] = ()
    fusion: dict = field(default_factory=dict)

    def write(self, directory: Path) -> None:
        doc = asdict(self)
        doc["levels"] = list(self.levels)
        doc["text_fields"] = list(self.text_fields)
        atomic_write_text(directory / MANIFEST, json.dumps(doc, indent=1) + "\n")

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        try:
            doc = json.loads(path.read_text())
            return cls(checkpoint_id=str(doc["checkpoint_id"]), dim=int(doc["dim"]),
                       levels=tuple(doc.get("levels", ())), format=int(doc.get("format", 1)),
                       extra=dict(doc.get("extra", {})), search=dict(doc.get("search", {})),
                       text_fields=tuple(doc.get("text_fields", ())),
                       fusion=dict(doc.get("fusion", {})))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{path}: missing (not an index generation)") from err
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not an index manifest ({err})") from err

    def label_filter(self, labels: Mapping[str, str]) -> dict[int, str]:
        """{level name: value} as {level index: value}, checked against the levels."""
        wanted: dict[int, str] = {}
        for level, value in labels.items():
            if level not in self.levels:
                raise ValueError(f"unknown label level {level!r}; this index has {self.levels}")
            if not isinstance(value, str):
                raise TypeError(f"label filter values must be strings, got {value!r}")
            wanted[self.levels.index(level)] = value
        return wanted

    def check(self, checkpoint_id: str, dim: int, where: Path) -> None:
        if self.dim != dim:
            raise ManifestMismatch(
                f"{where} holds {self.dim}-d vectors of checkpoint {self.checkpoint_id}; "
                f"the encoder gives {dim}-d vectors (checkpoint {checkpoint_id}). "
                "Rebuild it with `xmr index build` for this checkpoint."
            )
        if self.checkpoint_id != checkpoint_id:
            raise ManifestMismatch(
                f"{where} was built with checkpoint {self.checkpoint_id}, not {checkpoint_id}: "
                "its vectors are in another space. Rebuild it with `xmr index build "
                "--checkpoint CKPT --data CORPUS --out INDEX` or load the matching checkpoint."
            )
