"""`xmr data wikipedia SRC OUT`: the classic Wikipedia cross-modal layout.

SRC holds `trainset_txt_img_cat.list` and `testset_txt_img_cat.list` (rows
``text_id<TAB>image_id<TAB>category``), `categories.list` (one name a line), `texts/<text_id>.txt`
(plain text, or the original XML with the text inside ``<text>``; any language, UTF-8) and
`images/<category>/<image_id>.jpg`. The category of a row may be its name or its 1-based line
number in categories.list, as in the original release. One label level: ``category``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from models.data.corpus import Item, write_corpus
from models.data.images import ImageError, open_image
from models.data.importers.report import ImportProblem, ImportReport

LISTS = {"train": "trainset_txt_img_cat.list", "test": "testset_txt_img_cat.list"}
TEXT_TAG = re.compile(r"<text>(.*?)</text>", re.DOTALL | re.IGNORECASE)
ANY_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Row:
    where: str  # "file:line", for messages
    text_id: str
    image_id: str
    category: str
    split: str


def read_categories(src: Path) -> list[str]:
    path = src / "categories.list"
    if not path.is_file():
        raise ImportProblem(f"{path}: missing")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [name for name in names if name]
    if not names:
        raise ImportProblem(f"{path}: no category")
    return names


def read_rows(src: Path, categories: list[str], report: ImportReport) -> Iterator[Row]:
    for split, name in LISTS.items():
        path = src / name
        if not path.is_file():
            raise ImportProblem(f"{path}: missing")
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield _parse_row(line, f"{path}:{line_no}", categories, split)
            except ImportProblem as problem:
                report.reject(problem)


def _parse_row(line: str, where: str, categories: list[str], split: str) -> Row:
    fields = line.strip().split("\t")
    if len(fields) != 3 or not all(fields):
        raise ImportProblem(f"{where}: expected text_id<TAB>image_id<TAB>category, got {line!r}")
    text_id, image_id, category = fields
    if category.isdigit() and category not in categories:
        number = int(category)
        if not 1 <= number <= len(categories):
            raise ImportProblem(f"{where}: category number {number} not in categories.list")
        category = categories[number - 1]
    if category not in categories:
        raise ImportProblem(f"{where}: category {category!r} is not in categories.list")
    return Row(where, text_id, image_id, category, split)


def read_text(path: Path) -> str:
    """Plain text, or the text inside <text> of the original XML; whitespace collapsed."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ImportProblem(f"{path}: missing text file") from err
    except UnicodeDecodeError as err:
        raise ImportProblem(f"{path}: not UTF-8 ({err})") from err
    match = TEXT_TAG.search(raw)
    if match:
        raw = ANY_TAG.sub(" ", match.group(1))
    text = " ".join(raw.split())
    if not text:
        raise ImportProblem(f"{path}: empty text")
    return text


def import_row(src: Path, out: Path, row: Row) -> Item:
    text = read_text(src / "texts" / f"{row.text_id}.txt")
    image_src = src / "images" / row.category / f"{row.image_id}.jpg"
    try:
        open_image(image_src)
    except ImageError as err:
        raise ImportProblem(f"{row.where}: {err}") from err
    relative = Path("images") / row.category / f"{row.image_id}.jpg"
    (out / relative).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image_src, out / relative)
    return Item(row.text_id, relative.as_posix(), text, (row.category,), row.split)


def import_wikipedia(src: Path, out: Path, report: ImportReport) -> list[Item]:
    categories = read_categories(src)
    rows = list(read_rows(src, categories, report))
    items: list[Item] = []
    seen: dict[str, str] = {}
    for row in tqdm(rows, desc="import wikipedia", unit="pair"):
        try:
            if row.text_id in seen:
                first = seen[row.text_id]
                raise ImportProblem(f"{row.where}: duplicate id {row.text_id!r} (first at {first})")
            items.append(import_row(src, out, row))
            seen[row.text_id] = row.where
        except ImportProblem as problem:
            report.reject(problem)
    if not items:
        raise ImportProblem(f"{src}: no valid item")
    write_corpus(out, items, ("category",), {"category": categories})
    return items
