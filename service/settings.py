"""Service settings: one pydantic-settings model, every field an `XMR_*` environment variable.

`xmr serve` flags override the environment; without either the demo artifacts are served.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def spare_cores() -> int:
    """The cores this process may run on, less one for the event loop (at least 1)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    return max(1, usable - 1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XMR_", extra="forbid", frozen=True)

    index: Path = Path("artifacts/indexes/default")
    checkpoint: Path = Path("artifacts/runs/default/checkpoint.pt")
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    device: str = "cpu"
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

    # OpenMP threads of torch (the encoder thread) and FAISS (the search thread). Unset: one
    # core fewer than this process may use (at least 1), not the libraries' "all cores": the
    # event loop (HTTP, JSON) needs a core of its own, and an OpenMP team that spins on a core
    # another thread needs runs several times slower, not a little (on 2 shared cores torch's
    # 2-thread default encoded a batch of 32 texts in 713 ms, 1 thread in 131 ms;
    # bench/results/service.md).
    encoder_threads: Annotated[int, Field(ge=1)] | None = None
    search_threads: Annotated[int, Field(ge=1)] | None = None

    log_level: str = "info"

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
    def encoder_thread_count(self) -> int:
        return self.encoder_threads or spare_cores()

    @property
    def search_thread_count(self) -> int:
        return self.search_threads or spare_cores()

    @property
    def writable(self) -> bool:
        return not self.read_only

