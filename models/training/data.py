"""What one run trains and validates on: the checks that can fail it before any feature is
extracted, the seeded validation carve of train, and the features and labels of each part."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from models.backbones.cache import FeatureCache
from models.config import ConfigError, TrainConfig, check_levels
from models.data.corpus import Corpus, Item
from models.features import Backbones, FeatureSet
from models.methods import check_learns_from_pairs, check_options
from models.methods.base import MethodDims
from models.training.captions import Captions, group_carve


@dataclass
class Split:
    """Features and per-level integer labels of a list of items."""

    items: list[Item]
    features: FeatureSet
    labels: np.ndarray  # int64 (n, levels)
    captions: Captions = field(init=False)

    def __post_init__(self) -> None:
        self.captions = Captions.of(self.items)


def carve_validation(
    items: list[Item], fraction: float, seed: int
) -> tuple[list[Item], list[Item]]:
    """Seeded random part of train held out for model selection: a share of the items, each
    with all its captions, so no validation item is trained on in any of its views."""
    train_rows, val_rows = group_carve(items, fraction, seed)
    return [items[i] for i in train_rows], [items[i] for i in val_rows]


def make_split(
    corpus: Corpus,
    items: list[Item],
    backbones: Backbones,
    cache: FeatureCache,
    levels: list[int] | None = None,
) -> Split:
    """Features and labels of `items` at the given corpus levels (default: all)."""
    levels = list(range(len(corpus.levels))) if levels is None else levels
    labels = np.zeros((len(items), len(levels)), dtype=np.int64)  # (n, 0): a label-free corpus
    for column, level in enumerate(levels):
        labels[:, column] = corpus.label_index(level, items)
    return Split(items, backbones.features(corpus, items, cache), labels)


def selection_for_corpus(config: TrainConfig, corpus: Corpus) -> TrainConfig:
    """The shipped settings select on labels and keywords, which needs train images with
    several captions; on a labelled corpus of one caption per image they select on labels (said
    on stderr, and recorded in the checkpoint's config)."""
    if config.select_on != "labels_and_keywords" or not corpus.labelled:
        return config
    if several_captions(corpus):
        return config
    print(f"note: every train image of {corpus.root} has one caption: selecting on labels "
          "(select_on: labels)", file=sys.stderr)
    return config.model_copy(update={"select_on": "labels"})


def several_captions(corpus: Corpus) -> bool:
    train_images = [item.image for item in corpus.split("train")]
    return len(set(train_images)) < len(train_images)


def validate(config: TrainConfig, corpus: Corpus) -> list[int]:
    """Every check that can fail a run, before any feature is extracted (ConfigError)."""
    check_options(config)
    if not corpus.labelled:
        return validate_label_free(config, corpus)
    if config.select_on == "labels_and_keywords" and not several_captions(corpus):
        raise ConfigError(
            "select_on: labels_and_keywords needs train images with several captions "
            f"(rows); every train image of {corpus.root} has one (re-import the corpus, or "
            "select_on: labels)"
        )
    return check_levels(config, corpus.levels)


def validate_label_free(config: TrainConfig, corpus: Corpus) -> list[int]:
    """A corpus without labels: the method must learn from pairs alone, nothing may name a
    label level or sample by label. Selection then uses pair recall, whatever `select_on` says
    (it names label scores that do not exist here)."""
    check_learns_from_pairs(config)
    if config.levels:
        raise ConfigError(f"levels {config.levels}: {corpus.root} has no label levels")
    if config.sampler == "class_balanced":
        raise ConfigError(f"sampler class_balanced groups by label: {corpus.root} has none")
    return []


@dataclass
class Prepared:
    """What a run needs besides the method: backbones, the train and validation parts."""

    backbones: Backbones
    levels: list[int]
    train: Split
    val: Split

    def dims(self, corpus: Corpus) -> MethodDims:
        return MethodDims(
            image=self.backbones.image.dim,
            text=self.backbones.text.dim,
            classes=tuple(len(corpus.label_sets[corpus.levels[i]]) for i in self.levels),
        )


def prepare_data(
    config: TrainConfig, corpus: Corpus, cache: FeatureCache, device: torch.device
) -> Prepared:
    levels = validate(config, corpus)
    train_items, val_items = carve_validation(
        corpus.split("train"), config.val_fraction, config.seed
    )
    if not train_items:
        raise ValueError(f"{corpus.root}: no train items")
    backbones = Backbones.build(
        config.text_backbone, device, fit_texts=[item.text for item in train_items],
        image_backbone=config.image_backbone,
    )
    return Prepared(
        backbones,
        levels,
        make_split(corpus, train_items, backbones, cache, levels),
        make_split(corpus, val_items, backbones, cache, levels),
    )
