"""The Milvus vector store: for indexes that outgrow one host.

Same contract as the FAISS store (unit float32 vectors in, int64 ids out, inner product =
cosine), but the vectors live in Milvus: milvus-lite (an embedded server process over one local
file, `uri=path/to/milvus.db`) for tests and single-host trials, a Milvus standalone server or a
distributed cluster (`uri=http://host:19530`, optional token) in production.

Design choices, and why:
- ids are the INT64 primary key, so they are the catalog's ids (never row positions).
- Metric IP on unit vectors (= cosine, as FAISS IndexFlatIP / IndexIDMap gives).
- Index FLAT by default: exact, and the only index milvus-lite builds without a training set;
  a server takes HNSW / IVF_* / AUTOINDEX through `index_type` (see docs/scaling.md).
- Filters are id sets from the metadata database, pushed to Milvus as `id in [...]`; the vector
  store stays ignorant of labels, exactly like the FAISS one.
- Strong consistency on every read, so a write is visible to the very next search (what the
  FAISS store gives for free and the shared backend suite checks).
- milvus-lite holds its file with an exclusive lock: one process at a time. A service with
  several worker processes, or a job writing while the service reads, needs a Milvus server.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from index.store import SearchKnob, check_additions, check_ids, check_vectors

STORE_FILE = "store.json"
LITE_FILE = "milvus.db"
VECTOR = "vector"
PRIMARY = "id"
# Milvus caps one request's size (64 MiB by default) and one query's result window (16,384).
WRITE_BATCH = 4096
QUERY_WINDOW = 16_384
MAX_TOPK = 16_384
# Search-time knobs, the FAISS store's defaults (index.store), so equal index types compare.
NPROBE = 16
EF_SEARCH = 128


class MilvusStore:
    """An id-mapped inner-product vector store in one Milvus collection."""

    def __init__(self, uri: str | Path, collection: str, dim: int, *, token: str = "",
                 index_type: str = "FLAT", index_params: dict[str, Any] | None = None) -> None:
        from pymilvus import MilvusClient

        self.uri = str(uri)
        self.collection = collection
        self.dim = int(dim)
        self.index_type = index_type
        self.spec = f"milvus {index_type}"
        self._index_params = index_params or {}
        if self._is_local(self.uri):
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        self._client = MilvusClient(self.uri, token=token)
        self._lock = threading.Lock()
        if not self._client.has_collection(collection):
            self._create(index_type, index_params or {})
        else:
            self._check_dim()
        self._client.load_collection(collection)

    @staticmethod
    def _is_local(uri: str) -> bool:
        return "://" not in uri

    def _create(self, index_type: str, index_params: dict[str, Any]) -> None:
        from pymilvus import DataType

        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(PRIMARY, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=self.dim)
        index = self._client.prepare_index_params()
        index.add_index(field_name=VECTOR, index_type=index_type, metric_type="IP",
                        params=index_params)
        self._client.create_collection(self.collection, schema=schema, index_params=index,
                                       consistency_level="Strong")

    def _check_dim(self) -> None:
        fields = self._client.describe_collection(self.collection)["fields"]
        vector = next(f for f in fields if f["name"] == VECTOR)
        found = int(vector["params"]["dim"])
        if found != self.dim:
            raise ValueError(
                f"{self.uri}:{self.collection} holds {found}-d vectors, not {self.dim}"
            )

    # -- writes ----------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Upsert: an id already present is replaced (one row, the latest vector)."""
        ids, vectors = check_additions(ids, vectors, self.dim)
        with self._lock:
            for start in range(0, len(ids), WRITE_BATCH):
                rows = [
                    {PRIMARY: int(i), VECTOR: v}
                    for i, v in zip(ids[start : start + WRITE_BATCH],
                                    vectors[start : start + WRITE_BATCH], strict=True)
                ]
                self._client.upsert(self.collection, rows)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ones are ignored); returns how many were present."""
        wanted = [int(i) for i in np.unique(check_ids(ids))]
        if not wanted:
            return 0
        with self._lock:
            present = self._present(wanted)
            if present:
                self._client.delete(self.collection, ids=present)
        return len(present)

    # -- reads -----------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allow: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (n, k), ids int64 (n, k)) best first, padded with -inf / -1.
        `allow`: only these ids may be returned (a label filter resolved to ids)."""
        queries = check_vectors(queries, self.dim, "queries")
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if k > MAX_TOPK:
            raise ValueError(f"Milvus returns at most {MAX_TOPK} neighbours, asked for {k}")
        n = len(queries)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        ids = np.full((n, k), -1, dtype=np.int64)
        if n == 0 or (allow is not None and len(allow) == 0):
            return scores, ids
        # The id set is spelled into the expression: milvus-lite has no expression templates.
        expr = "" if allow is None else f"{PRIMARY} in {check_ids(allow).tolist()}"
        hits = self._client.search(
            self.collection, data=list(queries), limit=k, filter=expr, output_fields=[],
            search_params={"metric_type": "IP", "params": self._knobs(k)}, anns_field=VECTOR,
        )
        for row, found in enumerate(hits):
            for col, hit in enumerate(found[:k]):
                ids[row, col] = int(hit[PRIMARY] if PRIMARY in hit else hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, ids

    def _knobs(self, k: int) -> dict[str, Any]:
        if self.index_type.startswith("IVF"):
            return {"nprobe": min(NPROBE, int(self._index_params.get("nlist", NPROBE)))}
        if self.index_type == "HNSW":
            return {"ef": max(EF_SEARCH, k)}
        return {}

    def train(self, vectors: np.ndarray) -> None:
        """Nothing to do: Milvus builds its index from the rows it holds."""

    def knob(self) -> SearchKnob | None:
        """None: the server's search parameter follows the index type (`_knobs`)."""
        return None

    def set_knob(self, value: int) -> None:
        raise ValueError(f"a Milvus store ({self.index_type}) has no search parameter to set")

    def count(self) -> int:
        result = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def __len__(self) -> int:
        return self.count()

    def contains(self, item_id: int) -> bool:
        return bool(self._present([int(item_id)]))

    def ids(self) -> np.ndarray:
        """Every id, sorted (for checks and for copying a store)."""
        found: list[int] = []
        iterator = self._client.query_iterator(self.collection, batch_size=QUERY_WINDOW,
                                               filter=f"{PRIMARY} >= -9223372036854775807",
                                               output_fields=[PRIMARY])
        while batch := iterator.next():
            found.extend(int(r[PRIMARY]) for r in batch)
        iterator.close()
        if not found:  # INT64_MIN itself cannot be expressed above; it is never an id we give.
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.asarray(found, dtype=np.int64))

    # -- lifecycle -------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Milvus keeps the vectors (durable once a write returns); `directory` keeps where they
        are. A milvus-lite file is named relative to `directory`, so an index directory can move
        (a volume mounted elsewhere) and still open."""
        directory.mkdir(parents=True, exist_ok=True)
        uri = self.uri
        if self._is_local(uri):
            uri = os.path.relpath(Path(uri).resolve(), directory.resolve())
        doc = {"backend": "milvus", "uri": uri, "collection": self.collection, "dim": self.dim,
               "index_type": self.index_type, "index_params": self._index_params}
        (directory / STORE_FILE).write_text(json.dumps(doc))

    @classmethod
    def load(cls, directory: Path, token: str = "") -> MilvusStore:
        doc = json.loads((directory / STORE_FILE).read_text())
        uri = doc["uri"]
        if cls._is_local(uri) and not Path(uri).is_absolute():
            uri = os.path.normpath(directory.resolve() / uri)
        return cls(uri, doc["collection"], doc["dim"], token=token, index_type=doc["index_type"],
                   index_params=doc.get("index_params"))

    def reset(self) -> None:
        """Empty the store (a rebuild from the metadata follows)."""
        with self._lock:
            self._client.drop_collection(self.collection)
            self._create(self.index_type, self._index_params)
            self._client.load_collection(self.collection)

    def flush(self) -> None:
        """Make every write durable (sealed segments); Milvus persists on its own, this only
        forces it now, e.g. before a generation is published."""
        self._client.flush(self.collection)

    def drop(self) -> None:
        self._client.drop_collection(self.collection)

    def close(self) -> None:
        self._client.close()

    # -- helpers ---------------------------------------------------------------------------

    def _present(self, ids: list[int]) -> list[int]:
        return [int(r[PRIMARY]) for r in self._get(ids, [PRIMARY])]

    def _get(self, ids: list[int], fields: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), QUERY_WINDOW):
            found.extend(self._client.get(self.collection, ids=ids[start : start + QUERY_WINDOW],
                                          output_fields=fields))
        return found
