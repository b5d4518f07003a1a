"""User keys and metadata: their limits, checked at the index layer's boundary, and the
canonical form of a metadata value that equality filters (`where`) compare.

A key is the user's name for an item (a product number, a corpus row id): 1-256 characters,
no control characters, unique in an index. Metadata is a JSON object of at most 16 KB
(serialised as compact UTF-8 JSON). Top-level fields with scalar values (string, number, true,
false, null) can be filtered on; nested values are stored and returned but not filterable.
Every check raises ValueError with the reason, so a service can answer 4xx with it.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

MAX_KEY = 256
MAX_METADATA_BYTES = 16 * 1024
# The key of a pair's text item: the pair's key (a corpus row id, or the key posted with an
# image-text pair) + this; the image item has the pair's key.
TEXT_KEY = ":text"
Scalar = str | int | float | bool | None


def text_key(pair_key: str) -> str:
    """The key of the text item of the pair keyed `pair_key` (its image has `pair_key`)."""
    return f"{pair_key}{TEXT_KEY}"


def check_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str):
        raise ValueError(f"key must be a string, not {type(key).__name__}")
    if not 1 <= len(key) <= MAX_KEY:
        raise ValueError(f"key must have 1-{MAX_KEY} characters, got {len(key)}")
    if any(unicodedata.category(c) == "Cc" for c in key):
        raise ValueError(f"key must not contain control characters: {key!r}")
    return key


def dump_metadata(metadata: object) -> str:
    """The stored form: compact JSON, checked to be an object within the size limit."""
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a JSON object, not {type(metadata).__name__}")
    if not all(isinstance(name, str) for name in metadata):
        raise ValueError("metadata field names must be strings")
    try:
        text = json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)
    except (TypeError, ValueError) as err:  # a set, bytes, NaN, ... somewhere inside
        raise ValueError(f"metadata must be plain JSON: {err}") from err
    size = len(text.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES}")
    return text


def canonical(value: Any) -> str:
    """One string per JSON scalar value, equal for equal values (1 and 1.0 are one number;
    true is not 1): what the filterable-field table stores and `where` looks up."""
    if value is None or isinstance(value, bool | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a JSON number")
        return str(int(value)) if value.is_integer() else repr(value)
    raise ValueError(f"only strings, numbers, true, false and null compare; got {value!r}")


def filterable(metadata: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, canonical value) of each top-level scalar field."""
    return [(name, canonical(value)) for name, value in metadata.items()
            if value is None or isinstance(value, bool | str | int | float)]


def check_where(where: Mapping[str, Any] | None) -> dict[str, str]:
    """{field: canonical value} of a metadata equality filter; {} for none."""
    if where is None:
        return {}
    if not isinstance(where, Mapping):
        raise ValueError(f"where must be an object of field: value, not {type(where).__name__}")
    out: dict[str, str] = {}
    for name, value in where.items():
        if not isinstance(name, str):
            raise ValueError(f"where field names must be strings, got {name!r}")
        try:
            out[name] = canonical(value)
        except ValueError as err:
            raise ValueError(f"where[{name!r}]: {err}") from err
    return out
