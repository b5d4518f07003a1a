"""Retrieval methods: each a `Method` (models.methods.base) composed from heads and losses.

`build_method(config, dims)` is the one factory; the registry maps the pinned method names.
"""

from __future__ import annotations

from pydantic import ValidationError

from models.config import ConfigError, TrainConfig
from models.methods.base import Method, MethodDims


def _registry() -> dict[str, type[Method]]:
    from models.methods.aaml import AAML
    from models.methods.acmr import ACMR
    from models.methods.cca import CCA
    from models.methods.dhaml import DHAML
    from models.methods.dscmr import DSCMR
    from models.methods.linear import LinearProjection
    from models.methods.triplet import TripletBaseline

    return {
        "dhaml": DHAML,
        "aaml": AAML,
        "acmr": ACMR,
        "dscmr": DSCMR,
        "triplet": TripletBaseline,
        "cca": CCA,
        "linear": LinearProjection,
    }


def method_names() -> list[str]:
    return sorted(_registry())


def method_class(name: str) -> type[Method]:
    registry = _registry()
    if name not in registry:
        raise ConfigError(f"unknown method {name!r}; known: {sorted(registry)}")
    return registry[name]


def check_options(config: TrainConfig) -> None:
    """Raise ConfigError when the method is unknown or its `options:` do not validate."""
    cls = method_class(config.method)
    try:
        cls.Options(**config.options)
    except ValidationError as err:
        raise ConfigError(f"invalid options for method {config.method!r}:\n{err}") from err


def build_method(config: TrainConfig, dims: MethodDims) -> Method:
    check_options(config)
    return method_class(config.method)(config, dims)
