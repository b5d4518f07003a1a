"""The modality gap measures against plain loops, and the classifier on a gap and on none."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.evaluation.modality_gap import modality_gap
from tests.fixtures import unit


def test_cosine_and_centroid_match_loops() -> None:
    rng = np.random.default_rng(0)
    images, texts = unit(rng.normal(size=(30, 6))), unit(rng.normal(size=(30, 6)))
    gap = modality_gap(images, texts)
    cosines = [sum(a * b for a, b in zip(i, t, strict=True)) for i, t in zip(images, texts,
                                                                              strict=True)]
    centre_i = [sum(row[d] for row in images) / len(images) for d in range(6)]
    centre_t = [sum(row[d] for row in texts) / len(texts) for d in range(6)]
    assert gap["paired_cosine"] == pytest.approx(sum(cosines) / len(cosines))
    assert gap["centroid_distance"] == pytest.approx(math.dist(centre_i, centre_t))


def test_classifier_sees_a_gap_and_no_gap() -> None:
    rng = np.random.default_rng(1)
    shared = rng.normal(size=(200, 8))
    apart = modality_gap(unit(shared + [3, 0, 0, 0, 0, 0, 0, 0]),
                         unit(shared - [3, 0, 0, 0, 0, 0, 0, 0]))
    together = modality_gap(unit(rng.normal(size=(200, 8))), unit(rng.normal(size=(200, 8))))
    assert apart["modality_classifier_acc"] > 0.95
    assert abs(together["modality_classifier_acc"] - 0.5) < 0.15
