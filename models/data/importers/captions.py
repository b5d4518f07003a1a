"""`xmr data captions SRC OUT`: captioned images in the Karpathy-split JSON layout.

COCO, Flickr8k and Flickr30k are distributed with this split file (`dataset_coco.json`,
`dataset_flickr8k.json`, `dataset_flickr30k.json`):
``{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw": str}, ...]}, ...]}``.
SRC is that file, or a folder holding exactly one `dataset_*.json`. The images lie in a folder
beside it, as the releases unpack: COCO's `train2014/` and `val2014/` (named by `filepath`),
Flickr30k's `flickr30k-images/`, Flickr8k's `Flicker8k_Dataset/`; the split file may sit
in its own sub-folder (`karpathy/dataset_coco.json`). The image root is found, not configured:
of the split file's folder, its sub-folders, its parent and the parent's sub-folders, the one
that holds the most of the first images the file names.

Each sentence becomes a manifest line of its image (id ``<image path>#<n>``); `val` and
`restval` go to train, since the corpus format has train and test only. No labels.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from models.data.corpus import Item, write_corpus
from models.data.images import ImageError, open_image
from models.data.importers.report import ImportProblem, ImportReport

SPLITS = {"train": "train", "restval": "train", "val": "train", "test": "test"}
SPLIT_FILES = "dataset_*.json"
ROOT_SAMPLE = 50  # images checked per candidate folder when looking for the image root


@dataclass(frozen=True)
class Entry:
    where: str  # "file: images[i] (name)", for messages
    image: PurePosixPath  # filepath/filename, relative to the image root
    split: str
    captions: tuple[str, ...]


def find_split_file(src: Path) -> Path:
    if src.is_file():
        return src
    if not src.is_dir():
        raise ImportProblem(f"{src}: no such file or folder")
    found = sorted(src.glob(SPLIT_FILES))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ImportProblem(f"{src}: expected one {SPLIT_FILES} (found {names}); pass the file")
    return found[0]


def read_entries(path: Path, report: ImportReport) -> Iterator[Entry]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ImportProblem(f"{path}: not a readable JSON file ({err})") from err
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list):
        raise ImportProblem(f"{path}: no \"images\" list (not a Karpathy split file)")
    for index, raw in enumerate(images):
        where = f"{path}: images[{index}]"
        try:
            yield _parse_entry(raw, where, report)
        except ImportProblem as problem:
            report.reject(problem)


def _parse_entry(raw: Any, where: str, report: ImportReport) -> Entry:
    if not isinstance(raw, dict):
        raise ImportProblem(f"{where}: not an object")
    filename, filepath = raw.get("filename"), raw.get("filepath", "")
    if not isinstance(filename, str) or not filename or not isinstance(filepath, str):
        raise ImportProblem(f"{where}: needs a \"filename\" string (and \"filepath\" a string)")
    image = PurePosixPath(filepath, filename)
    where = f"{where} ({image})"
    if image.is_absolute() or ".." in image.parts:
        raise ImportProblem(f"{where}: image path must be relative to the image folder")
    split = raw.get("split")
    if split not in SPLITS:
        raise ImportProblem(f"{where}: split {split!r} is not one of {sorted(SPLITS)}")
    return Entry(where, image, SPLITS[split], _captions(raw.get("sentences"), where, report))


def _captions(sentences: Any, where: str, report: ImportReport) -> tuple[str, ...]:
    """The image's non-empty captions, whitespace collapsed; a bad sentence alone is left out
    with --skip-invalid, an image with none at all is bad."""
    if not isinstance(sentences, list):
        raise ImportProblem(f"{where}: needs a \"sentences\" list")
    captions = []
    for n, sentence in enumerate(sentences):
        raw = sentence.get("raw") if isinstance(sentence, dict) else None
        text = " ".join(raw.split()) if isinstance(raw, str) else ""
        if text:
            captions.append(text)
        else:
            report.reject(ImportProblem(f"{where}: sentences[{n}] has no \"raw\" text"))
    if not captions:
        raise ImportProblem(f"{where}: no caption")
    return tuple(captions)


def find_image_root(split_file: Path, entries: list[Entry]) -> Path:
    """The candidate folder holding the most of the first images the split file names."""
    here = split_file.parent
    candidates = [here, *_subfolders(here), here.parent, *_subfolders(here.parent)]
    sample = [entry.image for entry in entries[:ROOT_SAMPLE]]
    found = {root: sum((root / image).is_file() for image in sample)
             for root in dict.fromkeys(candidates)}
    best = max(found, key=lambda root: found[root])  # the first of equals: the nearest
    if not found[best]:
        looked = ", ".join(str(root) for root in found)
        raise ImportProblem(f"{split_file}: none of its first images ({sample[0]}, ...) "
                            f"is in a folder beside it; looked in {looked}")
    return best


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def import_entry(root: Path, out: Path, entry: Entry) -> list[Item]:
    """Check the image decodes, place it under OUT/images/ and give one item per caption."""
    source = root / entry.image
    try:
        open_image(source)
    except ImageError as err:
        raise ImportProblem(f"{entry.where}: {err}") from err
    relative = Path("images") / entry.image
    _place(source, out / relative)
    return [Item(f"{entry.image}#{n}", relative.as_posix(), text, (), entry.split)
            for n, text in enumerate(entry.captions)]


def _place(source: Path, target: Path) -> None:
    """A hard link where the file system allows it (COCO is 20 GB), a copy where not."""
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return  # placed by an earlier run
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def import_captions(src: Path, out: Path, report: ImportReport) -> list[Item]:
    split_file = find_split_file(src)
    entries = list(read_entries(split_file, report))
    if not entries:
        raise ImportProblem(f"{split_file}: no valid image")
    root = find_image_root(split_file, entries)
    items: list[Item] = []
    seen: dict[PurePosixPath, str] = {}
    for entry in tqdm(entries, desc="import captions", unit="image"):
        try:
            if entry.image in seen:
                raise ImportProblem(f"{entry.where}: image listed twice (first at "
                                    f"{seen[entry.image]})")
            items.extend(import_entry(root, out, entry))
            seen[entry.image] = entry.where
        except ImportProblem as problem:
            report.reject(problem)
    if not items:
        raise ImportProblem(f"{split_file}: no valid image")
    write_corpus(out, items, (), {})
    return items
