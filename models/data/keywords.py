"""Query keywords of a corpus: what people type to find an item, beside its caption.

A corpus may carry `keywords.json` (``{"source": str, "keywords": {item id: [keyword, ...]}}``)
next to its manifest. Evaluation turns it into keyword queries (models.evaluation.keywords);
training never reads it: an importer that wants keywords trained on writes them as extra
manifest rows of train items, so no keyword of a test item can reach training.

The OpenMoji keywords are Unicode CLDR's English emoji annotations (CLDR 41,
common/annotations/en.xml, shipped gzipped in models/resources under the Unicode licence).
"""

from __future__ import annotations

import gzip
import json
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

from models.data.corpus import CorpusError, _atomic_write

KEYWORDS = "keywords.json"
CLDR_RESOURCE = "cldr-annotations-en-41.xml.gz"
CLDR_SOURCE = "Unicode CLDR 41 annotations/en.xml"
VARIATION_SELECTOR = "\ufe0f"


def cldr_keywords() -> dict[str, tuple[str, ...]]:
    """Emoji (as characters, U+FE0F removed, as CLDR writes them) -> its keywords."""
    out: dict[str, tuple[str, ...]] = {}
    for node in _cldr_annotations():
        if node.get("type") == "tts" or not node.text:
            continue
        words = (word.strip() for word in node.text.split("|"))
        out[node.get("cp", "")] = tuple(dict.fromkeys(w for w in words if w))
    return out


def cldr_names() -> dict[str, str]:
    """Emoji (as `cldr_keywords` keys them) -> its English short name (`cat face`)."""
    return {node.get("cp", ""): node.text.strip() for node in _cldr_annotations()
            if node.get("type") == "tts" and node.text and node.text.strip()}


def _cldr_annotations() -> list[ET.Element]:
    data = resources.files("models.resources").joinpath(CLDR_RESOURCE).read_bytes()
    return list(ET.fromstring(gzip.decompress(data)).iter("annotation"))


def emoji_chars(hex_stem: str) -> str:
    """`1F468-200D-1F4BB` -> the characters, without variation selectors (CLDR's key)."""
    return "".join(chr(int(p, 16)) for p in hex_stem.split("-")).replace(VARIATION_SELECTOR, "")


def other_keywords(keywords: tuple[str, ...], name: str) -> tuple[str, ...]:
    """The keywords that are not the item's own name (case-insensitive)."""
    return tuple(k for k in keywords if k.casefold() != name.casefold())


def write_keywords(root: Path, keywords: dict[str, list[str]], source: str) -> None:
    doc = {"source": source, "keywords": keywords}
    _atomic_write(root / KEYWORDS, json.dumps(doc, ensure_ascii=False, indent=0) + "\n")


def read_keywords(root: str | Path) -> dict[str, tuple[str, ...]] | None:
    """The corpus's query keywords by item id, or None when it carries none."""
    path = Path(root) / KEYWORDS
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): tuple(str(w) for w in v) for k, v in doc["keywords"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise CorpusError(f"{path}: not a keywords file ({err})") from err
