"""Training configuration: data, not code. Loaded from YAML; unknown keys are rejected.

Its own module (not under training/) because every method and the encoder read it too, and
they must not import the trainer.

Each method's tuned settings ship inside the package, in models/configs/NAME.yaml (the
repository's configs/ links there), so an installed `xmr train --method NAME` finds them;
default.yaml is what `xmr train` trains without --method or --config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TextBackboneName = Literal["minilm", "char-ngram"]
TEXT_BACKBONES: tuple[str, ...] = get_args(TextBackboneName)
CONFIGS = Path(__file__).parent / "configs"
DEFAULT_CONFIG = "default"


class ConfigError(ValueError):
    """A configuration that cannot train; raised before any work starts."""


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "linear"
    text_backbone: TextBackboneName = "minilm"
    # The frozen image extractor (models.backbones.image); the checkpoint carries it, so the
    # encoder, the index job and the service build the one the heads were trained on.
    image_backbone: Literal["efficientnet-lite0", "efficientnet-lite2"] = "efficientnet-lite0"
    # Label levels to train on, coarse to fine (a subset of the corpus's levels, in its order);
    # None = all of them. `levels: [fine]` is the single-level ablation of the hierarchy.
    levels: list[str] | None = None
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    embed_dim: int = Field(256, ge=2)
    seed: int = 0
    # Part of the train split held out for model selection and early stopping (never test).
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    patience: int = Field(10, ge=1)
    # `class_balanced` fills each batch with `per_class` items of each of batch_size/per_class
    # finest labels, so label-aware metric losses see positives beyond the paired item.
    sampler: Literal["random", "class_balanced"] = "random"
    per_class: int = Field(2, ge=1)
    # Images with several captions (rows): `all` trains on every row each epoch; `one_per_image`
    # draws one of an image's rows per epoch (an epoch sees each image once, whatever its
    # number of captions).
    caption_sampling: Literal["all", "one_per_image"] = "all"
    # Model selection on the validation part: finest-label mAP, or its mean with the keyword
    # mAP of the validation images' extra captions (as queries; needs several captions per image).
    select_on: Literal["labels", "labels_and_keywords"] = "labels"
    # Method-specific settings; each method validates its own.
    options: dict[str, Any] = Field(default_factory=dict)


def load_config(path: Path | None, **overrides: Any) -> TrainConfig:
    """YAML file (optional) then command-line overrides (None means not given)."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config ({err})") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config is a mapping of keys to values")
    raw.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return TrainConfig(**raw)
    except ValidationError as err:
        raise ConfigError(f"invalid config{f' {path}' if path else ''}:\n{err}") from err


def packaged_methods() -> list[str]:
    """The methods with settings shipped in the package."""
    return sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem != DEFAULT_CONFIG)


def packaged_config(method: str | None) -> Path:
    """The shipped settings of `method`; None: the default config."""
    path = CONFIGS / f"{method or DEFAULT_CONFIG}.yaml"
    if method == DEFAULT_CONFIG or not path.is_file():
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(packaged_methods())}")
    return path


def default_method() -> str:
    """The method of the default config (what `xmr train` trains without --method)."""
    return load_config(packaged_config(None)).method


def check_levels(config: TrainConfig, corpus_levels: tuple[str, ...]) -> list[int]:
    """Indices of the corpus levels the config trains on; ConfigError when they do not match."""
    if config.levels is None:
        return list(range(len(corpus_levels)))
    unknown = [name for name in config.levels if name not in corpus_levels]
    if unknown or not config.levels:
        raise ConfigError(
            f"label levels {config.levels} do not match the corpus levels {list(corpus_levels)}"
        )
    indices = [corpus_levels.index(name) for name in config.levels]
    if indices != sorted(set(indices)):
        raise ConfigError(
            f"label levels {config.levels} must be distinct and ordered coarse to fine as in the "
            f"corpus ({list(corpus_levels)})"
        )
    return indices
