"""Labels against the index's vocabulary: the label levels of its live generation (coarse to
fine) and the values each level knows, those the checkpoint was trained on and those stored
items carry (Retriever.label_values). A search filter names known levels and values; an item's
labels give each level one value, or are empty, and each value is known unless the item asks
for new ones (`new_labels`). Every refusal is a 422 problem naming what is known."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from service.problems import Problem

if TYPE_CHECKING:
    from service.retriever import Retriever

T = TypeVar("T")
Vocabulary = Mapping[str, Collection[str]]  # level -> its known values, levels coarse to fine
MAX_LABELS, MAX_LABEL_CHARS = 16, 200
SHOWN = 40  # known values named in a message; GET /v1/info lists them all


def check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """An item's labels as strings a label can be (the vocabulary is checked on ingest)."""
    if len(labels) > MAX_LABELS:
        raise Problem(422, f"at most {MAX_LABELS} labels per item, got {len(labels)}")
    for label in labels:
        if not label.strip() or len(label) > MAX_LABEL_CHARS or "\x00" in label:
            raise Problem(422, f"labels must be non-empty strings of at most {MAX_LABEL_CHARS} "
                               f"characters, got {label[:40]!r}")
    return tuple(labels)


def check_filter(labels: Mapping[str, str] | None, known: Vocabulary
                 ) -> dict[str, str] | None:
    if not labels:
        return None
    unknown = sorted(set(labels) - set(known))
    if unknown:
        levels = ", ".join(known) if known else "none (this index has no label levels)"
        raise Problem(422, f"unknown label level(s) {unknown}; levels are: {levels}")
    for level, value in labels.items():
        if not isinstance(value, str) or not value or len(value) > MAX_LABEL_CHARS:
            raise Problem(422, f"label filter {level!r} must be a non-empty string of at most "
                               f"{MAX_LABEL_CHARS} characters")
        if value not in known[level]:
            raise Problem(422, f"unknown value {value!r} for label level {level!r}; known "
                               f"values: {named(known[level])}")
    return dict(labels)


def check_items_labels(items: Sequence[tuple[Sequence[str], bool]], known: Vocabulary
                       ) -> None:
    """Each item's (labels, new_labels)."""
    for labels, new_labels in items:
        check_item_labels(labels, known, new_labels)


def check_item_labels(labels: Sequence[str], known: Vocabulary, new_labels: bool) -> None:
    if not labels:
        return
    levels = list(known)
    if not levels:
        raise Problem(422, "this index has no label levels: an item's labels must be empty")
    if len(labels) != len(levels):
        raise Problem(422, f"an item's labels give one value per label level, coarse to fine "
                           f"({', '.join(levels)}), or none; got {len(labels)}")
    for level, value in zip(levels, labels, strict=True):
        if not new_labels and value not in known[level]:
            raise Problem(422, f"unknown value {value!r} for label level {level!r} (known: "
                               f"{named(known[level])}); send new_labels=true to add it")


async def with_vocabulary(retriever: Retriever, check: Callable[[Vocabulary], T]) -> T:
    """`check(vocabulary)`; when it refuses, again with the vocabulary read afresh (an item
    stored since, perhaps by another process on the same index, may carry the value)."""
    try:
        return check(await retriever.label_values())
    except Problem:
        return check(await retriever.label_values(refresh=True))


def named(values: Collection[str]) -> str:
    shown = sorted(values)
    if not shown:
        return "none"
    more = f" and {len(shown) - SHOWN} more (GET /v1/info lists them)" \
        if len(shown) > SHOWN else ""
    return ", ".join(shown[:SHOWN]) + more
