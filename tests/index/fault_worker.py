"""Ingest forever into an index directory, printing each acknowledgement; the fault test kills
this process with SIGKILL at random points. Usage: fault_worker.py INDEX_DIR TAG SEED"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from index.catalog import Catalog, NewItem  # noqa: E402
from index.records import text_hash  # noqa: E402

DIM = 16
CHECKPOINT = "fault-test"


def vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    row = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return row / np.linalg.norm(row)


def main() -> None:
    root, tag, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    catalog = Catalog.open(root, checkpoint_id=CHECKPOINT, dim=DIM, snapshot_every=5)
    print("READY", flush=True)
    acked: list[int] = []
    n = 0
    while True:
        if acked and rng.random() < 0.2:
            victim = acked.pop(rng.randrange(len(acked)))
            print(f"DELETING {victim}", flush=True)  # from here it may or may not be gone
            catalog.delete(victim)
            print(f"DEL {victim}", flush=True)
            continue
        texts = [f"{tag}-{n + j}" for j in range(rng.randint(1, 4))]
        n += len(texts)
        items = [NewItem("text", text_hash(t), ("g",), text=t) for t in texts]
        done = catalog.ingest(items, np.stack([vector(t) for t in texts]))
        for (item_id, _), text in zip(done, texts, strict=True):
            acked.append(item_id)
            print(f"ADD {item_id} {text}", flush=True)


if __name__ == "__main__":
    main()
