"""One index generation opened: its manifest, metadata database and vector stores, the stores
loaded from the latest snapshot and caught up with the metadata's journal; and snapshots written
(what index.catalog and the re-index job build on; index.catalog explains the recovery)."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from index import layout
from index.backends import BackendSettings, create_store, load_store
from index.database import DATABASE, SPACES, ItemDatabase
from index.fsutil import atomic_write_text, fsync_dir, fsync_tree
from index.manifest import Manifest
from index.mapped import MappedStore
from index.store import VectorStore
from models.bm25 import Postings
from models.fusion import Fusion

log = logging.getLogger(__name__)
SNAPSHOTS = "snapshots"
POINTER = "SNAPSHOT"


@dataclass
class Generation:
    """One opened generation: its directory, manifest, database and stores."""

    path: Path
    manifest: Manifest
    meta: ItemDatabase
    stores: dict[str, VectorStore]
    applied: int  # journal sequence the stores (and lexicons) reflect
    lexicons: dict[str, Postings] = field(default_factory=dict)  # by modality, see lexicon()

    @functools.cached_property
    def fusion(self) -> Fusion:
        """How hybrid search combines its signals here (the manifest's, else the default)."""
        found = self.manifest.fusion
        return Fusion.from_dict(found) if found else Fusion()

    def lexicon(self, modality: str) -> Postings:
        """BM25 over the words of `modality`'s items (models.bm25), read from the database
        on first use and caught up from the journal with the stores after that."""
        if modality not in self.lexicons:
            with self.meta.read():  # the table as it is now, maybe past `applied`: catching
                self.lexicons[modality] = self.meta.lexicon(modality)  # up again is harmless
        return self.lexicons[modality]

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.meta.close()


def create_generation(root: Path, manifest: Manifest, spec: str = "Flat",
                      backend: BackendSettings | None = None) -> Path:
    """`backend`: FAISS (default) or Milvus (index.backends)."""
    path = layout.next_generation(root)
    path.mkdir()
    (path / layout.BUILDING).touch()
    manifest.write(path)
    ItemDatabase(path / DATABASE, manifest.text_fields).close()
    settings = backend or BackendSettings()
    stores = {m: create_store(manifest.dim, path, settings, name=m, spec=spec, gpu=False)
              for m in SPACES}
    try:
        _write_stores(path, stores, 0)
    finally:
        for store in stores.values():
            store.close()
    fsync_dir(root)
    return path


def open_generation(path: Path, gpu: bool = False,
                    backend: BackendSettings | None = None) -> Generation:
    """Load the latest snapshot and bring it into agreement with the metadata."""
    manifest = Manifest.read(path)
    meta = ItemDatabase(path / DATABASE, manifest.text_fields)
    seq = snapshot_seq(path)
    snap = path / SNAPSHOTS / f"snap-{seq:012d}"
    stores = {m: _load_or_create(snap / m, manifest.dim, path, backend, gpu) for m in SPACES}
    gen = Generation(path, manifest, meta, stores, seq)
    replayed = catch_up(gen)
    rebuilt = [m for m in SPACES if stores[m].count() != meta.count(m)]
    for modality in rebuilt:
        log.warning("%s: %s index disagrees with metadata (%d vs %d): rebuilding it",
                    path.name, modality, stores[modality].count(), meta.count(modality))
        rebuild_store(gen, modality)
    if (replayed or rebuilt) and meta.sealed() is None:
        write_snapshot(gen, replace=rebuilt)
    return gen


def catch_up(gen: Generation) -> int:
    """Apply journal entries after gen.applied to the stores and lexicons; idempotent (each
    touched id ends as the metadata has it: present with its vector and words, or absent).
    Returns entries applied."""
    with gen.meta.read():
        entries = gen.meta.journal_since(gen.applied)
        if not entries:
            return 0
        touched: dict[str, set[int]] = {m: set() for m in SPACES}
        for _seq, _op, item_id, modality in entries:
            touched[modality].add(item_id)
            if modality == "image":  # its caption vector changes with it (index.words)
                touched["caption"].add(item_id)
        present = {m: gen.meta.vectors(sorted(ids), gen.manifest.dim, m)
                   for m, ids in touched.items() if ids}
        for modality, lexicon in gen.lexicons.items():  # an upsert may move an item across
            gen.meta.refresh_lexicon(lexicon, modality, (e[2] for e in entries))
    for modality, (ids, vectors) in present.items():
        store = gen.stores[modality]
        gone = np.array(sorted(touched[modality] - set(ids.tolist())), dtype=np.int64)
        store.remove(gone)
        store.add(ids, vectors)
    gen.applied = entries[-1][0]
    return len(entries)


def _load_or_create(directory: Path, dim: int, generation: Path,
                    backend: BackendSettings | None, gpu: bool) -> VectorStore:
    """A snapshot's store; a store the snapshot predates (the caption store of a generation
    made before hybrid search) starts empty and is rebuilt from the database."""
    if directory.exists():
        return load_store(directory, backend, gpu=gpu)
    return create_store(dim, generation, backend, name=directory.name, gpu=gpu)


def rebuild_store(gen: Generation, modality: str) -> None:
    with gen.meta.read():
        ids, vectors = gen.meta.all_vectors(modality, gen.manifest.dim)
        gen.applied = gen.meta.high_water()
    store = gen.stores[modality]
    store.reset()
    if len(ids):
        store.add(ids, vectors)


def snapshot_seq(path: Path) -> int:
    return int((path / SNAPSHOTS / POINTER).read_text().strip())


def write_snapshot(gen: Generation, replace: Sequence[str] = ()) -> None:
    """Save the stores as of gen.applied: write a new directory, fsync it, then point at it.
    The pointer moves only forward, under the database's write lock, because several processes
    may snapshot one generation. `replace`: stores rebuilt from the database, written over
    their copies in a snapshot of the same sequence (which would otherwise be kept as is,
    and the store rebuilt again at every open)."""
    catch_up(gen)
    if not _write_stores(gen.path, gen.stores, gen.applied):  # a snapshot made before
        for name in replace:
            _replace_store(gen.path / SNAPSHOTS / f"snap-{gen.applied:012d}", name,
                           gen.stores[name])
    with gen.meta.write(allow_sealed=True):
        if snapshot_seq(gen.path) < gen.applied:
            _point_at(gen.path, gen.applied)
    for name, store in gen.stores.items():  # map what was just saved, drop the writes held
        if isinstance(store, MappedStore):
            store.rebase(gen.path / SNAPSHOTS / f"snap-{gen.applied:012d}" / name)


def _write_stores(path: Path, stores: Mapping[str, VectorStore], seq: int) -> bool:
    """True when this call wrote snapshot `seq`; False when one was there already."""
    base = path / SNAPSHOTS
    base.mkdir(exist_ok=True)
    final = base / f"snap-{seq:012d}"
    if final.exists():
        return False
    tmp = base / f".tmp-{seq:012d}-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for modality, store in stores.items():
        store.save(tmp / modality)
        fsync_tree(tmp / modality)
    fsync_tree(tmp)
    wrote = True
    try:
        tmp.rename(final)
    except OSError:  # another process wrote the same snapshot first
        shutil.rmtree(tmp, ignore_errors=True)
        wrote = False
    fsync_dir(base)
    if not (base / POINTER).exists():
        _point_at(path, seq)
    return wrote


def _replace_store(snapshot: Path, name: str, store: VectorStore) -> None:
    """Write `store` over the snapshot's copy: saved beside it, then renamed into place."""
    tmp = snapshot / f".tmp-{name}-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    store.save(tmp)
    fsync_tree(tmp)
    old = snapshot / f".old-{tmp.name[5:]}"
    if (snapshot / name).exists():
        (snapshot / name).rename(old)
    tmp.rename(snapshot / name)
    shutil.rmtree(old, ignore_errors=True)
    fsync_dir(snapshot)


def _point_at(path: Path, seq: int) -> None:
    """Name snapshot `seq` as the latest, then delete older ones and stale temporaries."""
    base = path / SNAPSHOTS
    atomic_write_text(base / POINTER, f"{seq}\n")
    for old in base.iterdir():
        if _stale(old, seq):
            shutil.rmtree(old, ignore_errors=True)


def _stale(path: Path, seq: int) -> bool:
    if path.name.startswith("snap-"):
        return int(path.name[5:]) < seq
    try:  # temporaries of crashed writers (a live writer finishes within the hour)
        return path.name.startswith(".tmp-") and time.time() - path.stat().st_mtime > 3600
    except FileNotFoundError:
        return False
