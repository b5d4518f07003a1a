"""GPU placement gives the same results as the CPU (run: pytest -m gpu; bench/gpu_check.sh).

Skips cleanly without FAISS GPU support or without a GPU (CI and developer machines)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from index.gpu import use_gpu
from index.store import FaissStore
from tests.index.helpers import clustered

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not use_gpu(), reason="no GPU: FAISS without GPU support or no device"),
]
DIM = 64


def _pair(spec: str, data: np.ndarray, ids: np.ndarray) -> tuple[FaissStore, FaissStore]:
    cpu = FaissStore.create(DIM, spec, gpu=False)
    if not cpu.is_trained:
        cpu.train(data)
    gpu = FaissStore(faiss.clone_index(cpu.index), spec, DIM, gpu=True)  # same training
    for store in (cpu, gpu):
        store.add(ids, data)
    assert gpu.on_gpu and not cpu.on_gpu
    return cpu, gpu


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_allclose(a[0], b[0], atol=1e-4)
    # ids may differ only where two scores tie to float precision
    differ = a[1] != b[1]
    assert np.all(np.abs(a[0][differ] - b[0][differ]) < 1e-4)
    assert differ.mean() < 0.01


@pytest.mark.parametrize("spec", ["Flat", "IVF128,Flat"])
def test_gpu_search_equals_cpu(spec: str) -> None:
    data = clustered(20_000, DIM, centres=200, seed=11)
    ids = np.arange(len(data), dtype=np.int64) * 5 + 10**9
    cpu, gpu = _pair(spec, data, ids)
    cpu.nprobe = gpu.nprobe = 16
    queries = clustered(300, DIM, centres=200, seed=12)
    for k in (1, 10, 100):
        _same(cpu.search(queries, k), gpu.search(queries, k))
    # removals: in place on the CPU master, tombstones on the GPU copy
    for store in (cpu, gpu):
        store.remove(ids[:500])
    _same(cpu.search(queries, 10), gpu.search(queries, 10))
    assert not np.isin(gpu.search(queries, 10)[1], ids[:500]).any()
    # upserts and a filtered search (served by the CPU master)
    for store in (cpu, gpu):
        store.add(ids[:10], data[100:110])
    _same(cpu.search(queries, 10), gpu.search(queries, 10))
    allow = ids[::3]
    _same(cpu.search(queries, 10, allow), gpu.search(queries, 10, allow))
