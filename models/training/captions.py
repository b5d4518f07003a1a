"""Several captions per image: which rows share an image, which texts describe which images.

A corpus may give an image several lines (several captions, e.g. an emoji's name and its
keywords). Training then needs to know that two rows are one image (so the validation carve
keeps all of an item's rows on one side, and a batch's instance term does not push an image
away from its own other caption), that rows of one item may show it in several images
(extra views, ids `KEY~...`), and that a text shared by several images (the keyword
`face`) describes each of them. Everything here is derived from the rows alone: no labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from models.data.corpus import Item
from models.evaluation.keywords import KeywordQueries, image_rows, keyword_queries


@dataclass(frozen=True)
class Captions:
    image_ids: np.ndarray  # int64 (rows,): rows with the same image file share an id
    text_ids: np.ndarray  # int64 (rows,): rows with the same text share an id
    describes: sparse.csr_matrix  # bool (texts, images): some row pairs that text and image

    @classmethod
    def of(cls, items: Sequence[Item]) -> Captions:
        image_ids = np.unique([i.image for i in items], return_inverse=True)[1].astype(np.int64)
        text_ids = np.unique([i.text for i in items], return_inverse=True)[1].astype(np.int64)
        shape = (int(text_ids.max(initial=-1)) + 1, int(image_ids.max(initial=-1)) + 1)
        ones = np.ones(len(items), dtype=bool)
        describes = sparse.csr_matrix((ones, (text_ids, image_ids)), shape=shape, dtype=bool)
        return cls(image_ids, text_ids, describes)

    @property
    def several(self) -> bool:
        """True when some image has more than one row."""
        return len(np.unique(self.image_ids)) < len(self.image_ids)

    def matches(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), len(rows)) bool: [i, j] when row j's text describes row i's image."""
        sub = self.describes[self.text_ids[rows]][:, self.image_ids[rows]]
        return np.asarray(sub.toarray()).T

    def one_per_image(self, rng: np.random.Generator) -> np.ndarray:
        """One random row of each image (an epoch that sees every image once)."""
        shuffled = rng.permutation(len(self.image_ids))
        first = np.unique(self.image_ids[shuffled], return_index=True)[1]
        return np.sort(shuffled[first])


def item_key(item_id: str) -> str:
    """The item a row belongs to: its id up to the first `~` (an importer's extra captions and
    extra views of an item are ids `KEY~...`)."""
    return item_id.split("~", 1)[0]


def item_groups(items: Sequence[Item]) -> list[int]:
    """Group of each row, numbered in order of first appearance: rows that share an image or an
    item key are one item (an item's other views join it, as do an image's other captions)."""
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for item in items:
        parent[root("key:" + item_key(item.id))] = root("image:" + item.image)
    number: dict[str, int] = {}
    return [number.setdefault(root("image:" + i.image), len(number)) for i in items]


def group_carve(
    items: Sequence[Item], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Row indices of (train, validation): a seeded random share of the ITEMS goes to
    validation, each with its own image's rows only; its other views are dropped, so the
    validation images are the same with or without extra views and none of them is trained
    on. With one row per image this is the plain row carve."""
    group = item_groups(items)
    n_groups = max(group, default=-1) + 1
    order = np.random.default_rng(seed).permutation(n_groups)
    n_val = max(1, round(n_groups * fraction))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))  # an item's place in the permutation
    own = own_images(items, group)
    rows = sorted(range(len(items)), key=lambda r: rank[group[r]])
    train = [r for r in rows if rank[group[r]] >= n_val]
    val = [r for r in rows if rank[group[r]] < n_val and items[r].image == own[group[r]]]
    return train, val


def own_images(items: Sequence[Item], group: list[int]) -> dict[int, str]:
    """Each item's own image: that of the row whose id is the item key, else its first row's."""
    own: dict[int, str] = {}
    for item, g in zip(items, group, strict=True):
        if item.id == item_key(item.id):
            own[g] = item.image
    for item, g in zip(items, group, strict=True):
        own.setdefault(g, item.image)
    return own


def caption_queries(items: Sequence[Item]) -> tuple[KeywordQueries, list[int]] | None:
    """Each image's captions beyond its first as keyword queries against the images (first
    rows), with the row of each query's text; None when every image has one caption."""
    rows = image_rows(items)
    column = {items[r].image: i for i, r in enumerate(rows)}
    words: list[list[str]] = [[] for _ in rows]
    text_row: dict[str, int] = {}
    for row, item in enumerate(items):
        if row != rows[column[item.image]]:
            words[column[item.image]].append(item.text)
            text_row.setdefault(item.text, row)
    if not text_row:
        return None
    queries = keyword_queries(words)
    return queries, [text_row[t] for t in queries.texts]
