"""The pinned corpus format: `manifest.jsonl` + `labels.json` + image files.

Every importer writes this format and everything downstream reads only this format. One line
of `manifest.jsonl` is one image-text pair:
``{"id", "image", "text", "labels": [coarse, ..., fine], "split": "train" | "test"}``.
`labels.json` names the levels and the label set of each: ``{"levels": [...],
"labels": {level: [...]}}``. A label-free corpus (captioned pairs) declares no level and its
rows carry no `labels`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

MANIFEST = "manifest.jsonl"
LABELS = "labels.json"
SPLITS = ("train", "test")


class CorpusError(ValueError):
    """A corpus directory that does not follow the pinned format; the message names where."""


@dataclass(frozen=True)
class Item:
    id: str
    image: str  # path relative to the corpus directory
    text: str
    labels: tuple[str, ...]  # coarse .. fine, one per level; empty in a label-free corpus
    split: str

    def to_json(self) -> str:
        row = asdict(self)
        if self.labels:
            row["labels"] = list(self.labels)
        else:
            del row["labels"]
        return json.dumps(row, ensure_ascii=False)


@dataclass(frozen=True)
class Corpus:
    root: Path
    levels: tuple[str, ...]
    label_sets: dict[str, tuple[str, ...]]
    items: tuple[Item, ...]

    @property
    def labelled(self) -> bool:
        """False for a label-free corpus: pairs only, no level to learn or rank by."""
        return bool(self.levels)

    def split(self, name: str) -> list[Item]:
        return [item for item in self.items if item.split == name]

    def image_path(self, item: Item) -> Path:
        return self.root / item.image

    def label_index(self, level: int, items: Sequence[Item]) -> list[int]:
        """Integer class of each item at one level, in the order of labels.json."""
        lookup = {name: i for i, name in enumerate(self.label_sets[self.levels[level]])}
        return [lookup[item.labels[level]] for item in items]


def write_corpus(
    root: Path, items: Sequence[Item], levels: Sequence[str], label_sets: dict[str, Sequence[str]]
) -> None:
    """Write manifest and labels atomically (temp file + rename), so a reader never sees half."""
    root.mkdir(parents=True, exist_ok=True)
    labels_doc = {"levels": list(levels), "labels": {k: list(v) for k, v in label_sets.items()}}
    _atomic_write(root / LABELS, json.dumps(labels_doc, ensure_ascii=False, indent=1) + "\n")
    _atomic_write(root / MANIFEST, "".join(item.to_json() + "\n" for item in items))


def read_corpus(root: str | Path) -> Corpus:
    """Read and validate a corpus directory; the first problem raises CorpusError naming it."""
    root = Path(root)
    levels, label_sets = _read_labels(root / LABELS)
    items = list(_read_manifest(root / MANIFEST, levels, label_sets))
    if not items:
        raise CorpusError(f"{root / MANIFEST}: no items")
    return Corpus(root, levels, label_sets, tuple(items))


def _read_labels(path: Path) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    if not path.is_file():
        raise CorpusError(f"{path}: missing (every corpus needs labels.json)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        levels = tuple(doc["levels"])
        label_sets = {level: tuple(doc["labels"][level]) for level in levels}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        reason = f"no key {err}" if isinstance(err, KeyError) else str(err)
        raise CorpusError(
            f'{path}: not a labels file ({reason}); expected {{"levels": [level, ...], '
            '"labels": {level: [value, ...]}}, or {"levels": []} for a corpus without labels'
        ) from err
    return levels, label_sets


def _read_manifest(
    path: Path, levels: tuple[str, ...], label_sets: dict[str, tuple[str, ...]]
) -> Iterable[Item]:
    if not path.is_file():
        raise CorpusError(f"{path}: missing")
    known = {level: set(names) for level, names in label_sets.items()}
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            item = _parse_item(line, where)
            if item.id in seen:
                raise CorpusError(f"{where}: duplicate id {item.id!r}")
            seen.add(item.id)
            _check_item(item, levels, known, where)
            yield item


def _parse_item(line: str, where: str) -> Item:
    try:
        row = json.loads(line)
        return Item(
            id=str(row["id"]),
            image=str(row["image"]),
            text=str(row["text"]),
            labels=tuple(str(label) for label in row.get("labels", ())),
            split=str(row["split"]),
        )
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise CorpusError(f"{where}: not a manifest row ({err})") from err


def _check_item(
    item: Item, levels: tuple[str, ...], known: dict[str, set[str]], where: str
) -> None:
    if item.split not in SPLITS:
        raise CorpusError(f"{where}: split {item.split!r} is not one of {SPLITS}")
    if not item.text.strip():
        raise CorpusError(f"{where}: empty text for id {item.id!r}")
    if not levels and item.labels:
        raise CorpusError(f"{where}: labels {list(item.labels)} in a corpus with no label level")
    if len(item.labels) != len(levels):
        raise CorpusError(f"{where}: {len(item.labels)} labels, expected {len(levels)} {levels}")
    for level, label in zip(levels, item.labels, strict=True):
        if label not in known[level]:
            raise CorpusError(f"{where}: label {label!r} is not in level {level!r}")
    if os.path.isabs(item.image) or ".." in Path(item.image).parts:
        raise CorpusError(f"{where}: image path must be relative to the corpus: {item.image!r}")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def summarize(corpus: Corpus) -> str:
    """The sizes a user checks against the README: split sizes and labels used per level."""
    train = len(corpus.split("train"))
    lines = [f"items: {len(corpus.items)} (train {train}, test {len(corpus.items) - train})"]
    if not corpus.labelled:
        lines.append("no labels (image-text pairs only)")
    for index, level in enumerate(corpus.levels):
        used = {item.labels[index] for item in corpus.items}
        lines.append(f"level {level}: {len(used)} labels")
    return "\n".join(lines)
