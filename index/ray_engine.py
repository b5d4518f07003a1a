"""The Ray engine of the re-index job: the embedding step spread over a Ray cluster.

Only *how vectors are computed* changes. The driver turns the corpus into rows
`(row, modality, payload)`, Ray Data streams them through an actor pool of encoders
(`map_batches`, one actor per GPU, or per CPU slot when the cluster has none), and the driver
writes every vector back into row order, so the job's writes (ids, metadata, the vector store)
go through exactly the same code path as with the local engine. Each actor builds its embedder
once from a small picklable spec (a checkpoint path, a feature-cache directory) and runs the very
same `embed(modality, payloads)` the local engine runs, so outputs agree to float tolerance.

Ray is imported lazily: the local engine and the service never pay for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from index.engines import Batches, Embedder, EmbedderSpec, check_rows

log = logging.getLogger(__name__)

# The project root (the folder holding `index/` and `models/`), put on the workers' path when
# Ray is started locally so workers import this checkout, not whatever else is installed.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RayEngine:
    """`address=None` starts a local Ray instance (and stops it after the job); otherwise it
    joins a running cluster (`ray://head:10001`, or `auto` on a cluster node)."""

    spec: EmbedderSpec
    address: str | None = None
    workers: int | None = None  # None: one per GPU of the cluster, else one per CPU slot
    batch_size: int = 256

    @cached_property
    def _driver(self) -> Embedder:
        """One embedder in the driver, for what the job records (checkpoint id, dimension)."""
        return self.spec.build("cpu", None)

    @property
    def checkpoint_id(self) -> str:
        return self._driver.checkpoint_id

    @property
    def dim(self) -> int:
        return int(self._driver.dim)

    def stream(self, modalities: Sequence[str], payloads: Sequence[str]) -> Batches:
        """(row numbers, vectors) as the actors finish batches (in no fixed order)."""
        check_rows(modalities, payloads)
        if not len(payloads):
            return
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            _init_ray(self.address)
        try:
            yield from self._run(modalities, payloads)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, modalities: Sequence[str], payloads: Sequence[str]) -> Batches:
        import ray
        import ray.data

        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        workers = self.workers or gpus or max(1, int(resources.get("CPU", 1)))
        log.info("ray engine: %d encoder actors (one %s each) on %s", workers,
                 "GPU" if gpus else "CPU", resources)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        rows = ray.data.from_items(
            [{"row": i, "modality": m, "payload": p}
             for i, (m, p) in enumerate(zip(modalities, payloads, strict=True))]
        )
        vectors = rows.map_batches(
            EncoderActor,
            fn_constructor_args=(self.spec, "cuda" if gpus else "cpu"),
            compute=ray.data.ActorPoolStrategy(size=workers),
            batch_size=self.batch_size,
            batch_format="numpy",
            num_cpus=1,
            num_gpus=1 if gpus else 0,
        )
        for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
            yield np.asarray(batch["row"], dtype=np.int64), batch["vector"]


class EncoderActor:
    """One encoder per actor, loaded once; a batch may mix modalities."""

    def __init__(self, spec: EmbedderSpec, device: str) -> None:
        # One torch thread per actor: the actors are the parallelism (one per CPU slot).
        self.embedder = spec.build(device, threads=1 if device == "cpu" else None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        modalities = batch["modality"].astype(str)
        payloads = batch["payload"].astype(str)
        parts: dict[str, np.ndarray] = {}
        for modality in np.unique(modalities):
            rows = np.flatnonzero(modalities == modality)
            parts[str(modality)] = self.embedder.embed(str(modality), list(payloads[rows]))
        dim = next(iter(parts.values())).shape[1]
        vectors = np.zeros((len(payloads), dim), dtype=np.float32)
        for modality, part in parts.items():
            vectors[modalities == modality] = part
        return {"row": batch["row"], "vector": vectors}


def _init_ray(address: str | None) -> None:
    import ray

    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        # A local instance: workers are fresh processes (spawned, never forked after torch
        # warm-up) that import this checkout.
        path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
    else:
        # A cluster runs its own image with xmr installed (see docs/scaling.md).
        kwargs["address"] = address
    ray.init(**kwargs)
