"""Fill and read the feature cache for a list of images or texts, in batches, with progress.

Only cache misses reach a backbone. Image decoding runs in a thread one batch ahead of the
backbone (Pillow releases the GIL while decoding), so the backbone is the bottleneck.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.backbones.cache import Arrays, FeatureCache, content_key
from models.backbones.image import EfficientNetLite, ImageFeatures
from models.backbones.text import TextBackbone, TextFeatures
from models.data.images import ImageError, open_image, to_array

IMAGE_BATCH = 32
TEXT_BATCH = 256
Compute = Callable[[list[int]], Iterator[tuple[list[int], Arrays]]]


def image_features(
    paths: Sequence[Path],
    backbone: EfficientNetLite,
    cache: FeatureCache,
    batch_size: int = IMAGE_BATCH,
    progress: bool = True,
) -> ImageFeatures:
    """Every image's features; an unreadable image raises ImageError naming its file."""
    features, unreadable = _image_features(paths, backbone, cache, batch_size, progress, True)
    assert not unreadable
    return features


def readable_image_features(
    paths: Sequence[Path],
    backbone: EfficientNetLite,
    cache: FeatureCache,
    batch_size: int = IMAGE_BATCH,
) -> tuple[ImageFeatures, list[int]]:
    """(features of the images that could be read, in order; the positions of those that
    could not: missing, truncated, not an image)."""
    return _image_features(paths, backbone, cache, batch_size, False, False)


def _image_features(paths: Sequence[Path], backbone: EfficientNetLite, cache: FeatureCache,
                    batch_size: int, progress: bool, strict: bool
                    ) -> tuple[ImageFeatures, list[int]]:
    contents: list[bytes | None] = [_read(Path(p), strict) for p in paths]
    keys = [None if c is None else content_key(c) for c in contents]

    def compute(indices: list[int]) -> Iterator[tuple[list[int], Arrays]]:
        batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
        for batch, pixels in _decoded_ahead(batches, contents, paths, backbone.size, strict):
            kept = [i for i, p in zip(batch, pixels, strict=True) if p is not None]
            if kept:
                out = backbone.encode(np.stack([p for p in pixels if p is not None]))
                yield kept, {"pooled": out.pooled, "regions": out.regions}

    found = _cached([k for k in keys if k is not None], backbone.id, cache, compute,
                    "image features", progress, [i for i, k in enumerate(keys) if k is not None])
    readable = [k for k in keys if k is not None and k in found]
    unreadable = [i for i, k in enumerate(keys) if k is None or k not in found]
    arrays = _stacked(readable, found, ("pooled", "regions"))
    return ImageFeatures(arrays["pooled"], arrays["regions"]), unreadable


def text_features(
    texts: Sequence[str],
    backbone: TextBackbone,
    cache: FeatureCache,
    batch_size: int = TEXT_BATCH,
    progress: bool = True,
) -> TextFeatures:
    keys = [content_key(t.encode("utf-8")) for t in texts]

    def compute(indices: list[int]) -> Iterator[tuple[list[int], Arrays]]:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            out = backbone.encode([texts[i] for i in chunk])
            yield chunk, {"pooled": out.pooled, "tokens": out.tokens, "mask": out.mask}

    found = _cached(keys, backbone.id, cache, compute, "text features", progress,
                    list(range(len(keys))))
    arrays = _stacked(keys, found, ("pooled", "tokens", "mask"))
    return TextFeatures(arrays["pooled"], arrays["tokens"], arrays["mask"])


def _cached(keys: list[str], backbone_id: str, cache: FeatureCache, compute: Compute,
            desc: str, progress: bool, positions: list[int]) -> dict[str, Arrays]:
    """Arrays by key for `keys` (the items at `positions`), computing only the misses, once per
    distinct key; a key `compute` leaves out (an image it could not decode) stays absent."""
    found = cache.get_many(backbone_id, sorted(set(keys)))
    first_of: dict[str, int] = {}
    for key, position in zip(keys, positions, strict=True):
        if key not in found:
            first_of.setdefault(key, position)
    key_at = dict(zip(positions, keys, strict=True))
    misses = list(first_of.values())
    with tqdm(total=len(misses), desc=desc, unit="item", disable=not progress or not misses) as bar:
        for indices, arrays in compute(misses):
            entries = [
                (key_at[i], {name: a[row] for name, a in arrays.items()})
                for row, i in enumerate(indices)
            ]
            cache.put_many(backbone_id, entries)
            found.update(entries)
            bar.update(len(indices))
    return found


def _stacked(keys: list[str], found: dict[str, Arrays], names: tuple[str, ...]) -> Arrays:
    if not keys:
        return {name: np.zeros((0,), dtype=np.float32) for name in names}
    return {name: np.stack([found[key][name] for key in keys]) for name in names}


def _read(path: Path, strict: bool) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as err:
        if strict:
            raise ImageError(f"{path}: cannot be read ({err.strerror or err})") from err
        return None


def _decoded_ahead(batches: list[list[int]], contents: Sequence[bytes | None],
                   paths: Sequence[Path], size: int, strict: bool
                   ) -> Iterator[tuple[list[int], list[np.ndarray | None]]]:
    """(batch, its pixels) with the next batch decoding in a thread while the caller encodes;
    an image that cannot be decoded is None (or, `strict`, raises naming its file)."""

    def decode(batch: list[int]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for i in batch:
            try:
                out.append(to_array(open_image(contents[i] or b""), size))
            except ImageError as err:
                if strict:
                    raise ImageError(f"{paths[i]}: {err}".replace("<bytes>: ", "")) from err
                out.append(None)
        return out

    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(decode, batches[0])
        for current, following in zip(batches, [*batches[1:], None], strict=True):
            pixels = pending.result()
            if following is not None:
                pending = pool.submit(decode, following)
            yield current, pixels
