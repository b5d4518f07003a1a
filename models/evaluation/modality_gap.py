"""The modality gap: how far apart a model keeps its image and text embeddings.

A shared space where the two modalities sit in separate regions ranks across modalities by
which side an item is on as much as by what it shows; adversarial training aims to close that
gap. Three measures on paired unit embeddings (row i of images is paired with row i of texts):

- `modality_classifier_acc`: 5-fold accuracy of a logistic regression telling an image
  embedding from a text one (0.5 = no gap, 1.0 = separable);
- `paired_cosine`: mean cosine of each image with its own text;
- `centroid_distance`: distance between the two modalities' mean embeddings.
"""

from __future__ import annotations

import numpy as np


def modality_gap(images: np.ndarray, texts: np.ndarray) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    x = np.concatenate([images, texts])
    y = np.concatenate([np.ones(len(images)), np.zeros(len(texts))])
    classifier = LogisticRegression(max_iter=2000, C=1.0)
    accuracy = cross_val_score(classifier, x, y, cv=5, scoring="accuracy").mean()
    return {
        "modality_classifier_acc": float(accuracy),
        "paired_cosine": float((images * texts).sum(axis=1).mean()),
        "centroid_distance": float(np.linalg.norm(images.mean(0) - texts.mean(0))),
    }
