"""Several captions per image: the validation carve keeps an image's rows together, the batch's
match mask says which texts describe which images, one caption per image per epoch."""

from __future__ import annotations

import numpy as np

from models.data.corpus import Item
from models.training.captions import Captions, caption_queries, group_carve
from models.training.data import carve_validation


def item(id_: str, image: str, text: str) -> Item:
    return Item(id_, image, text, ("g", "s"), "train")


ROWS = [
    item("a", "a.png", "cat face"), item("a~1", "a.png", "pet"), item("a~2", "a.png", "face"),
    item("b", "b.png", "dog face"), item("b~1", "b.png", "pet"), item("c", "c.png", "face"),
    item("d", "d.png", "pig"), item("e", "e.png", "cow"), item("f", "f.png", "owl"),
]


def test_carve_keeps_every_row_of_an_image_on_one_side() -> None:
    for seed in range(5):
        train, val = group_carve(ROWS, 0.3, seed)
        assert sorted(train + val) == list(range(len(ROWS)))
        assert not {ROWS[r].image for r in train} & {ROWS[r].image for r in val}


def test_carve_with_one_row_per_image_is_the_plain_seeded_permutation() -> None:
    items = [item(str(i), f"{i}.png", f"t{i}") for i in range(20)]
    train, val = carve_validation(items, 0.25, seed=3)
    order = np.random.default_rng(3).permutation(20)
    assert [i.id for i in val] == [str(i) for i in order[:5]]
    assert [i.id for i in train] == [str(i) for i in order[5:]]


def test_matches_mark_shared_texts_and_other_captions() -> None:
    captions = Captions.of(ROWS)
    rows = np.array([0, 4, 5])  # a "cat face", b "pet", c "face"
    got = captions.matches(rows)  # [i, j]: row j's text describes row i's image
    assert got.tolist() == [[True, True, True], [False, True, False], [False, False, True]]


def test_one_per_image_draws_each_image_once() -> None:
    captions = Captions.of(ROWS)
    assert captions.several
    rng = np.random.default_rng(0)
    drawn = [captions.one_per_image(rng) for _ in range(50)]
    assert all(sorted(ROWS[r].image for r in d) == sorted({i.image for i in ROWS}) for d in drawn)
    assert len({tuple(d) for d in drawn}) > 1


def test_caption_queries_are_the_captions_beyond_the_first() -> None:
    queries, text_rows = caption_queries(ROWS)
    assert queries.texts == ["face", "pet"]
    # database = a, b, c, d, e, f (first rows); "face" is a caption of a only beyond its first
    assert queries.relevance[0].tolist() == [True, False, False, False, False, False]
    assert queries.relevance[1].tolist() == [True, True, False, False, False, False]
    assert [ROWS[r].text for r in text_rows] == ["face", "pet"]
    assert caption_queries([item("x", "x.png", "only")]) is None


def test_carve_keeps_an_items_views_together_and_scores_its_own_image_only() -> None:
    """Extra views (`KEY~view` rows on another image) go with their item: to train, or, for a
    validation item, nowhere; validation is the same with or without views."""
    views = [item(f"{r.id.split('~')[0]}~tw{r.id[1:]}", "tw-" + r.image, r.text)
             for r in ROWS if r.id[0] in "abd"]
    for seed in range(8):
        plain_train, plain_val = carve_validation(ROWS, 0.3, seed)
        train, val = carve_validation(ROWS + views, 0.3, seed)
        assert val == plain_val
        val_items = {r.id.split("~")[0] for r in val}
        assert not val_items & {r.id.split("~")[0] for r in train}
        assert set(train) == set(plain_train) | {
            v for v in views if v.id.split("~")[0] not in val_items}
