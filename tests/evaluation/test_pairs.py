"""Pair recall of a label-free corpus: an image's captions are all relevant to it, each
caption's own image is relevant to it, and each image is counted once."""

from __future__ import annotations

import numpy as np

from models.data.corpus import Item
from models.evaluation.pairs import evaluate_pairs, pair_recall


def rows(images: list[str]) -> list[Item]:
    return [Item(f"r{n}", image, f"caption {n}", (), "test") for n, image in enumerate(images)]


def test_an_image_is_found_by_any_of_its_captions_and_counted_once() -> None:
    items = rows(["a.jpg", "a.jpg", "b.jpg", "c.jpg"])  # a has two captions
    texts = np.eye(4, dtype=np.float32)
    images = np.zeros((4, 4), dtype=np.float32)  # rows 0 and 1 are the one image a
    images[0] = images[1] = texts[1]  # a: on its second caption
    images[2] = [0, 0, 0.6, 0.8]  # b: nearer c's caption than its own
    images[3] = [0.1, 0, 0, 0.9]  # c: on its caption, a little towards a's first one
    recall = pair_recall(images, texts, items)
    # images a, b, c: a and c find a caption of theirs first, b second
    assert recall["i2t"] == {"R@1": 2 / 3, "R@5": 1.0, "R@10": 1.0}
    # captions: a's first ranks c first (0.1 > 0); the others find their image first
    assert recall["t2i"] == {"R@1": 3 / 4, "R@5": 1.0, "R@10": 1.0}
    report = evaluate_pairs(images, texts, items)
    assert report["avg_map"] is None and report["n_images"] == 3 and report["n_items"] == 4
    assert "no labels" in str(report["note"])
