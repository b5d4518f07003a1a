"""The layout of an index directory: INDEX/gen-NNNN/ generations and a CURRENT file naming the
live one.

A re-index writes a whole new generation beside the live one and then replaces CURRENT
atomically (temp file + fsync + rename), so a reader opens either the old generation or the
new one, whole. Image files uploaded through the service live in INDEX/media/, shared by every
generation (a rebuild re-embeds them from there).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from index.backends import BackendSettings, drop_external_stores
from index.fsutil import atomic_write_text

CURRENT = "CURRENT"
MEDIA = "media"
BUILDING = "BUILDING"  # marker file in a generation that has not been swapped in yet
_GEN = re.compile(r"^gen-(\d{4,})$")


def current(root: Path) -> Path | None:
    """The live generation directory, or None for a new index directory."""
    try:
        name = (root / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    if not _GEN.match(name) or not (root / name).is_dir():
        raise ValueError(f"{root / CURRENT} names {name!r}, which is not a generation there")
    return root / name


def generations(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _GEN.match(p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def next_generation(root: Path) -> Path:
    existing = generations(root)
    number = int(existing[-1].name.split("-")[1]) + 1 if existing else 1
    return root / f"gen-{number:04d}"


def swap(root: Path, generation: Path) -> None:
    """Make `generation` the live one (atomic and durable)."""
    if generation.parent.resolve() != root.resolve():
        raise ValueError(f"{generation} is not a generation of {root}")
    (generation / BUILDING).unlink(missing_ok=True)
    atomic_write_text(root / CURRENT, generation.name + "\n")


def prune(root: Path, keep: int = 2, backend: BackendSettings | None = None) -> list[Path]:
    """Delete old swapped-out generations, keeping the live one and `keep - 1` before it (a
    service may still be finishing searches on the previous one). Unfinished builds stay."""
    live = current(root)
    done = [g for g in generations(root) if not (g / BUILDING).exists()]
    if live is None or live not in done:
        return []
    old = done[: max(done.index(live) - (keep - 1), 0)]
    for generation in old:
        drop_external_stores(generation, backend)  # collections on a Milvus server
        shutil.rmtree(generation, ignore_errors=True)
    return old
