"""Service settings: one pydantic-settings model, every field an `XMR_*` environment variable,
read once by `xmr serve` (flags override the environment; without either the demo artifacts are
served) and passed down. The vector store fields (XMR_VECTOR_BACKEND, XMR_MILVUS_*,
XMR_FAISS_GPU) are index.settings.StoreSettings', shared with `xmr index build`.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from index.settings import Device, StoreSettings
from models.device import Runtime

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def usable_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def spare_cores() -> int:
    """The cores this process may run on, less one for the event loop (at least 1)."""
    return max(1, usable_cores() - 1)


class Settings(StoreSettings):
    model_config = SettingsConfigDict(env_prefix="XMR_", extra="forbid", frozen=True)

    index: Path = Path("artifacts/indexes/default")
    checkpoint: Path = Path("artifacts/runs/default/checkpoint.pt")
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    device: Device = "auto"  # auto (cuda when present), cpu, cuda, cuda:N
    # Bearer key required for every write (ingest, delete, jobs) when set.
    api_key: SecretStr | None = None
    # Refuse every write (405-free: a 403 problem) and allow any address without a key.
    read_only: bool = False

    # Dynamic batching: a batch is whatever queued while the encoder was busy, topped up for at
    # most batch_wait_ms, never more than batch_max_size queries.
    batch_max_size: Annotated[int, Field(ge=1, le=1024)] = 32
    batch_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 1.0
    queue_max: Annotated[int, Field(ge=1)] = 1024  # queued queries beyond this get a 503

    # Limits (every one answered with a 4xx problem, never a 5xx).
    max_k: Annotated[int, Field(ge=1, le=10_000)] = 100
    rerank_max: Annotated[int, Field(ge=1, le=1000)] = 50
    max_body_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    max_image_pixels: Annotated[int, Field(ge=1)] = 40_000_000
    max_text_chars: Annotated[int, Field(ge=1)] = 10_000
    max_batch_items: Annotated[int, Field(ge=1)] = 64
    request_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    # How long a request waits for the encoder and the index to serve one checkpoint again
    # (a swap half done, or the encoder of a rebuilt index loading) before a 503.
    swap_wait_s: Annotated[float, Field(gt=0)] = 10.0

    # Server processes: each runs the app (its own encoder, event loop and threads) on one
    # listening socket. They share the index's vectors (memory-mapped snapshots, index.mapped)
    # and see each other's writes through its journal; metrics are summed over them and
    # re-index jobs answered by any. More than one puts to work the cores one process leaves
    # idle while Python runs one thread at a time.
    workers: Annotated[int, Field(ge=1, le=64)] = 1

    # Encoder workers: threads that each run whole batches at once, sharing one model; torch
    # gives each an OpenMP team of `encoder_threads`. Unset: on the CPU, the cores this process
    # may use shared out among the server processes, one worker each (one on a GPU), each on
    # one thread. Several one-thread workers beat one team spanning the cores: a team waits at
    # every barrier for a core the event loop holds, lone workers just share the cores
    # (measured in bench/results/service_ab.md). FAISS (the search thread) runs on one core
    # fewer, shared out the same way (at least 1).
    encoder_workers: Annotated[int, Field(ge=1, le=256)] | None = None
    encoder_threads: Annotated[int, Field(ge=1, le=256)] = 1
    search_threads: Annotated[int, Field(ge=1)] | None = None
    # What runs text queries: ONNX Runtime, MiniLM and the method's text head as one graph
    # (exported on first use to a file beside the checkpoint, computed without holding the GIL),
    # equal to torch within 1e-4 (onnx); the same graph with 8-bit encoder weights (onnx-int8:
    # more served throughput and a ranking close to the float graph's, both measured in
    # bench/results/runtimes.md, but its activations are quantised per batch, so a query's
    # scores move slightly with the queries batched beside it); the same with activation
    # scales fixed at export, calibrated on short real queries, so a query's vector does not
    # depend on its batch (onnx-int8-static, made beside the float graph on first use); or
    # torch. The ONNX runtimes stay on torch, with a log line, for methods that read token
    # vectors, on a GPU, where onnxruntime is missing or the export fails. Image queries and
    # ingested images run on ONNX Runtime too (the image backbone and the method's image head
    # as one float graph, equal to torch within 1e-4, exported on the first image) under every
    # ONNX runtime.
    encoder_runtime: Runtime = "onnx"

    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("api_key", mode="after")
    @classmethod
    def _blank_key_is_no_key(cls, key: SecretStr | None) -> SecretStr | None:
        # `XMR_API_KEY=` (or compose passing an empty variable through) must not count as a key:
        # it would open a public address to writes with an empty Bearer token.
        return key if key is not None and key.get_secret_value().strip() else None

    @model_validator(mode="after")
    def _writable_needs_key_off_loopback(self) -> Settings:
        if not self.read_only and self.api_key is None and not is_loopback(self.host):
            raise ValueError(
                f"refusing to serve writable on non-loopback address {self.host!r} without an "
                "API key: set XMR_API_KEY (or XMR_READ_ONLY=true, or bind 127.0.0.1)"
            )
        return self

    @property
    def encoder_worker_count(self) -> int:
        if self.encoder_workers is not None:
            return self.encoder_workers
        return 1 if self.device.startswith("cuda") else max(1, usable_cores() // self.workers)

    @property
    def search_thread_count(self) -> int:
        return self.search_threads or max(1, spare_cores() // self.workers)

    @property
    def writable(self) -> bool:
        return not self.read_only

