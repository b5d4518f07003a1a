"""The GPU side of a FAISS store: where searches may run on a GPU, and the search-only GPU copy
of a CPU index.

Placement is decided in one function, `use_gpu(wanted)`, called at the edge with the
XMR_FAISS_GPU setting: wanted, FAISS built with GPU support and a GPU present -> searches run on
a GPU copy of the CPU index (index.store's `gpu=True`); otherwise on the CPU index. The CPU index
stays the master (saved, mutated, filtered searches), so results are the same either way
(bitwise for Flat; up to float summation order on the GPU)."""

from __future__ import annotations

import logging
from typing import Any

import faiss

log = logging.getLogger(__name__)

# GPU k-selection is limited to 2048 neighbours; larger over-fetches go to the CPU master.
GPU_MAX_K = 2048
# Re-clone the GPU copy once tombstones exceed this share of its rows.
GPU_RECLONE_SHARE = 0.05


def use_gpu(wanted: bool = True) -> bool:
    """The one place that decides GPU placement: `wanted` (a setting) and a GPU FAISS can use."""
    if not wanted:
        return False
    if not hasattr(faiss, "StandardGpuResources"):
        return False
    try:
        return int(faiss.get_num_gpus()) > 0
    except Exception:  # a GPU build on a machine without a driver
        return False


class GpuMirror:
    """A search-only GPU copy of the CPU master. Adds are mirrored; removals (which GPU indexes
    cannot do) become tombstones filtered out of over-fetched results; once they pass
    GPU_RECLONE_SHARE of the rows the copy is cloned afresh from the master."""

    def __init__(self, master: Any) -> None:
        self.resources = faiss.StandardGpuResources()
        self.index = faiss.index_cpu_to_gpu(self.resources, 0, master)
        self.tombstones: set[int] = set()

    def reclone(self, master: Any) -> None:
        self.index = faiss.index_cpu_to_gpu(self.resources, 0, master)
        self.tombstones.clear()


def try_mirror(index: Any, spec: str) -> GpuMirror | None:
    """A GPU copy when FAISS can place this index type there (HNSW cannot): else CPU only."""
    try:
        return GpuMirror(index)
    except Exception as err:  # unsupported index type on the GPU
        log.warning("index %s stays on the CPU: %s", spec, err)
        return None
