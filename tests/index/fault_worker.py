"""Ingest, upsert by key and delete forever in an index directory, printing each
acknowledgement; the fault test kills this process with SIGKILL at random points.
Usage: fault_worker.py INDEX_DIR TAG SEED"""

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
    keys: dict[int, str] = {}
    n = 0
    while True:
        if acked and rng.random() < 0.2:
            victim = acked.pop(rng.randrange(len(acked)))
            keys.pop(victim, None)
            print(f"DELETING {victim}", flush=True)  # from here it may or may not be gone
            catalog.delete(victim)
            print(f"DEL {victim}", flush=True)
            continue
        if keys and rng.random() < 0.2:  # replace a keyed item: same id, new text and vector
            item_id, key = rng.choice(sorted(keys.items()))
            text = f"{tag}-{n}"
            n += 1
            print(f"UPSERTING {item_id}", flush=True)  # old or new version from here
            [(same, created)] = catalog.ingest([item(text, key)], vector(text)[None])
            assert (same, created) == (item_id, False), "an upsert made a new item"
            print(f"ADD {item_id} {text} {key}", flush=True)
            continue
        texts = [f"{tag}-{n + j}" for j in range(rng.randint(1, 4))]
        n += len(texts)
        chosen = [f"key-{t}" if rng.random() < 0.5 else None for t in texts]
        done = catalog.ingest([item(t, k) for t, k in zip(texts, chosen, strict=True)],
                              np.stack([vector(t) for t in texts]))
        for (item_id, _), text, key in zip(done, texts, chosen, strict=True):
            acked.append(item_id)
            if key is not None:
                keys[item_id] = key
            print(f"ADD {item_id} {text} {key or '-'}", flush=True)


def item(text: str, key: str | None) -> NewItem:
    """Keyed items carry metadata that names their text, so a check can tell versions apart."""
    metadata = {} if key is None else {"text": text}
    return NewItem("text", text_hash(text), ("g",), text=text, key=key, metadata=metadata)

if __name__ == "__main__":
    main()
