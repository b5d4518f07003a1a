"""The images a corpus names, checked before a run extracts any feature: a missing, unreadable
or undecodable image answers like the importers do, one line with the manifest file, line and
image path (strict), or is left out with its rows and listed (`--skip-invalid`).

An image whose features the cache already holds decoded once before, so only the others are
decoded here; a warm cache costs one read and hash of each file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from models.backbones.cache import FeatureCache, content_key
from models.data.corpus import MANIFEST, Corpus, CorpusError
from models.data.images import ImageError, open_image
from models.data.importers.report import ImportProblem, ImportReport


def screen_images(corpus: Corpus, cache: FeatureCache, backbone_id: str,
                  report: ImportReport) -> Corpus:
    """`corpus` less the rows of bad images (reported); raises ImportProblem when strict."""
    problems = image_problems(corpus, cache, backbone_id)
    if not problems:
        return corpus
    lines = manifest_lines(corpus.root / MANIFEST)
    for item in corpus.items:
        if problem := problems.get(item.image):
            where = f"{corpus.root / MANIFEST}:{lines[item.id]}"
            report.reject(ImportProblem(f"{where}: image {item.image!r}: {problem}"))
    kept = tuple(item for item in corpus.items if item.image not in problems)
    if not any(item.split == "train" for item in kept):
        raise CorpusError(f"{corpus.root / MANIFEST}: no train row has a readable image")
    return dataclasses.replace(corpus, items=kept)


def image_problems(corpus: Corpus, cache: FeatureCache, backbone_id: str) -> dict[str, str]:
    """What is wrong with each bad image, by its manifest path."""
    problems: dict[str, str] = {}
    keys: dict[str, str] = {}
    for image in dict.fromkeys(item.image for item in corpus.items):
        try:
            keys[image] = content_key((corpus.root / image).read_bytes())
        except FileNotFoundError:
            problems[image] = "no such file"
        except OSError as err:
            problems[image] = f"cannot read it ({err.strerror or err})"
    cached = cache.known(backbone_id, sorted(set(keys.values())))
    for image, key in keys.items():
        if key not in cached:
            path = corpus.root / image
            try:
                open_image(path)
            except ImageError as err:  # its message starts with the path, already named
                problems[image] = str(err).removeprefix(f"{path}: ")
    return problems


def manifest_lines(path: Path) -> dict[str, int]:
    """Row id -> its line number in the manifest (as the corpus reader counts them)."""
    lines: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                lines.setdefault(str(json.loads(line)["id"]), number)
    return lines
