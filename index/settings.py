"""Settings read at a process edge (`xmr index build`, `xmr serve`) from `XMR_*` environment
variables, validated once, and passed down as plain arguments: nothing below reads the
environment.

`StoreSettings` is the vector store part both edges share; `BuildSettings` is the index job's.
The service's settings (service.settings) extend `StoreSettings`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from index.backends import BackendSettings
from index.gpu import use_gpu
from index.tuning import DEFAULT_TARGET
from models.device import PATTERN

# `auto` (cuda when torch sees one, else cpu), cpu, cuda or cuda:N: models.device's rule
Device = Annotated[str, Field(pattern=PATTERN)]


class StoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XMR_", extra="forbid", frozen=True)

    vector_backend: Literal["faiss", "milvus"] = "faiss"
    # A Milvus standalone server or cluster (http://milvus:19530); unset: milvus-lite, one
    # embedded file per index generation (tests, trials).
    milvus_uri: str | None = None
    milvus_token: SecretStr = SecretStr("")  # user:password when the server checks them
    milvus_index: Literal["FLAT", "HNSW", "IVF_FLAT", "AUTOINDEX"] = "FLAT"
    # Search on a GPU copy of each FAISS index when FAISS has GPU support and sees a GPU.
    faiss_gpu: bool = True

    @field_validator("vector_backend", mode="before")
    @classmethod
    def _backend_lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("milvus_index", mode="before")
    @classmethod
    def _index_upper_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("milvus_uri", mode="after")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    def backend(self) -> BackendSettings:
        return BackendSettings(self.vector_backend, self.milvus_uri,
                               self.milvus_token.get_secret_value(), self.milvus_index)

    @property
    def search_on_gpu(self) -> bool:
        return use_gpu(self.faiss_gpu)


class BuildSettings(StoreSettings):
    """`xmr index build`: the store of the new generation, the encoder's device, and the
    recall@10 each approximate index is tuned to on the other modality's vectors
    (index.tuning)."""

    device: Device = "auto"
    recall_target: float = Field(DEFAULT_TARGET, gt=0, le=1)
    # Metadata fields whose words hybrid search matches beside each item's caption or text
    # (index.words): comma-separated names, e.g. `title,description`.
    text_fields: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("text_fields", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value


def setting_problems(err: ValidationError, flags: Collection[str] = ()) -> list[str]:
    """Each problem named as the user set it: `--flag` for a field given as a command-line flag
    (`flags`), its `XMR_*` variable otherwise; a problem of several fields names none."""
    problems = []
    for error in err.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if not field:
            problems.append(error["msg"].removeprefix("Value error, "))
            continue
        name = f"--{field.replace('_', '-')}" if field in flags else f"XMR_{field.upper()}"
        problems.append(f"{name}={error['input']}: {error['msg']}")
    return problems
