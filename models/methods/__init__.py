"""Retrieval methods: each a `Method` (models.methods.base) composed from heads and losses.

`build_method(config, dims)` is the one factory; the registry maps the pinned method names.
"""

from __future__ import annotations

from models.methods.base import Method, MethodDims
from models.training.config import TrainConfig

def _registry() -> dict[str, type[Method]]:
    from models.methods.linear import LinearProjection

    return {"linear": LinearProjection}


def method_names() -> list[str]:
    return sorted(_registry())


def build_method(config: TrainConfig, dims: MethodDims) -> Method:
    registry = _registry()
    if config.method not in registry:
        raise ValueError(f"unknown method {config.method!r}; known: {sorted(registry)}")
    return registry[config.method](config, dims)
