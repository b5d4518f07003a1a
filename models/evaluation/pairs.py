"""Pair recall: how a corpus without labels is evaluated.

With no label there is no class to count as relevant, only the pairing: an image's relevant
texts are its own captions (however many rows it has), a caption's relevant image is its own.
Each distinct image is one query (image->text) and one database entry (text->image), as in the
COCO and Flickr30k retrieval protocol (R@1/5/10 both ways).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.data.corpus import Item
from models.evaluation.keywords import image_rows
from models.evaluation.metrics import recall_at_k_relevant

NO_MAP = (
    "mAP is left out: this corpus has no labels, so no item shares a class with another; "
    "retrieval is scored by pair recall (R@K: an image against all captions, each caption "
    "against the images, relevant = its own pairing)"
)


def caption_owners(items: Sequence[Item]) -> tuple[list[int], np.ndarray]:
    """(first row of each distinct image, the image index of every row)."""
    first = image_rows(items)
    column = {items[row].image: i for i, row in enumerate(first)}
    return first, np.array([column[item.image] for item in items], dtype=np.int64)


def pair_recall(
    images: np.ndarray, texts: np.ndarray, items: Sequence[Item]
) -> dict[str, dict[str, float]]:
    """R@1/5/10 image->its captions (`i2t`) and caption->its image (`t2i`); images and texts
    are the rows' embeddings (an image's rows share one image, its first row is used)."""
    first, owner = caption_owners(items)
    relevant = owner[None, :] == np.arange(len(first))[:, None]  # (images, captions)
    return {
        "i2t": recall_at_k_relevant(images[first], texts, relevant),
        "t2i": recall_at_k_relevant(texts, images[first], relevant.T),
    }


def evaluate_pairs(
    images: np.ndarray, texts: np.ndarray, items: Sequence[Item]
) -> dict[str, object]:
    """The eval report's body for a label-free corpus: the pinned mAP keys are null, `note`
    says why, `recall` holds pair recall."""
    return {
        "i2t_map": None,
        "t2i_map": None,
        "avg_map": None,
        "levels": {},
        "note": NO_MAP,
        "recall": pair_recall(images, texts, items),
        "n_items": int(len(items)),
        "n_images": len(image_rows(items)),
    }
