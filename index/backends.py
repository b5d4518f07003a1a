"""Which vector store backs an index: FAISS (default, embedded) or Milvus (a distributed
vector database, for indexes that outgrow one host). Chosen once, at the edge (index.settings
reads XMR_VECTOR_BACKEND and XMR_MILVUS_*), and passed in here as a `BackendSettings`.

A generation directory records its backend in `store.json`, so `load_store` opens whatever a
generation was built with, whatever the settings say now: switching backends is a rebuild
(`xmr index build`), never a silent reinterpretation of an existing index.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from index.mapped import MappedStore
from index.store import FaissStore, VectorStore

BACKENDS = ("faiss", "milvus")
STORE_FILE = "store.json"


@dataclass(frozen=True)
class BackendSettings:
    """`milvus_uri` None: milvus-lite, one embedded file per generation (tests, trials)."""

    backend: str = "faiss"
    milvus_uri: str | None = None
    milvus_token: str = ""
    milvus_index: str = "FLAT"  # FLAT (exact), HNSW, IVF_FLAT, AUTOINDEX

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown vector backend {self.backend!r}; known: {BACKENDS}")


def create_store(dim: int, generation: Path, settings: BackendSettings | None = None, *,
                 name: str = "vectors", spec: str = "Flat", n_hint: int = 0,
                 gpu: bool = False) -> VectorStore:
    """An empty store `name` (e.g. a modality) of the generation directory `generation`.
    `spec`, `n_hint` and `gpu` are FAISS's (index type, expected size, GPU placement)."""
    settings = settings or BackendSettings()
    if settings.backend == "faiss":
        return FaissStore.create(dim, spec, n_hint=n_hint, gpu=gpu)
    from index.milvus_store import LITE_FILE, MilvusStore

    # milvus-lite: one file per generation (pruned with it); a server: one collection per
    # generation and store, written beside the live ones.
    uri = settings.milvus_uri or str(generation / LITE_FILE)
    collection = collection_name(generation, name)
    store = MilvusStore(uri, collection, dim, token=settings.milvus_token,
                        index_type=settings.milvus_index)
    if store.count():  # left over from an interrupted build of the same generation
        store.reset()
    return store


def load_store(directory: Path, settings: BackendSettings | None = None, *,
               gpu: bool = False) -> VectorStore:
    """The store saved in `directory`, on the backend its `store.json` names. A FAISS store
    searched on the CPU is memory-mapped (index.mapped), so processes that serve one index
    share one copy of its vectors."""
    doc = json.loads((directory / STORE_FILE).read_text())
    if doc.get("backend", "faiss") == "milvus":
        from index.milvus_store import MilvusStore

        token = (settings or BackendSettings()).milvus_token
        return MilvusStore.load(directory, token=token)
    if gpu:
        return FaissStore.load(directory, gpu=True)
    return MappedStore.load(directory)


def drop_external_stores(generation: Path, settings: BackendSettings | None = None) -> int:
    """Drop the server-side collections a generation's snapshots name, before the directory is
    deleted (a milvus-lite file goes with the directory). Returns how many were dropped."""
    seen: set[tuple[str, str]] = set()
    for path in generation.glob(f"snapshots/*/*/{STORE_FILE}"):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if doc.get("backend") == "milvus" and "://" in doc.get("uri", ""):
            seen.add((doc["uri"], doc["collection"]))
    if not seen:
        return 0
    from pymilvus import MilvusClient

    token = (settings or BackendSettings()).milvus_token
    for uri, collection in sorted(seen):
        client = MilvusClient(uri, token=token)
        try:
            client.drop_collection(collection)
        finally:
            client.close()
    return len(seen)


def collection_name(generation: Path, name: str) -> str:
    """Named after the index directory, the generation and the store, so a rebuild writes
    beside the live collections on a shared server and a swap stays a CURRENT rename."""
    generation = generation.resolve()
    raw = f"xmr_{generation.parent.name}_{generation.name}_{name}"
    return re.sub(r"[^0-9A-Za-z_]", "_", raw)[:255]
