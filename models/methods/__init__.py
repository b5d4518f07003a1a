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


def check_learns_from_pairs(config: TrainConfig) -> None:
    """ConfigError when the configured method needs labels (for a corpus without any): the
    message names the methods that train on pairs alone, and how."""
    cls = method_class(config.method)
    check_options(config)
    if cls.learns_from_pairs(cls.Options(**config.options)):
        return
    able = "; ".join(
        f"{name} ({method.pairs_only})" for name, method in sorted(_registry().items())
        if method.pairs_only
    )
    raise ConfigError(
        f"method {config.method!r} with these options needs label levels, and this corpus has "
        f"none (image-text pairs only). Methods that train on pairs alone: {able}"
    )


def build_method(config: TrainConfig, dims: MethodDims) -> Method:
    check_options(config)
    return method_class(config.method)(config, dims)
