"""Fill and read the feature cache for a list of images or texts, in batches, with progress.

Only cache misses reach a backbone. Image decoding runs in a thread pool one batch ahead of
the backbone (Pillow releases the GIL while decoding), so the backbone is the bottleneck.
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
from models.data.images import open_image, to_array

IMAGE_BATCH = 32
TEXT_BATCH = 256


def image_features(
    paths: Sequence[Path],
    backbone: EfficientNetLite,
    cache: FeatureCache,
    batch_size: int = IMAGE_BATCH,
    progress: bool = True,
) -> ImageFeatures:
    contents = [Path(p).read_bytes() for p in paths]
    keys = [content_key(c) for c in contents]

    def compute(indices: list[int]) -> Iterator[tuple[list[int], Arrays]]:
        decoded = _decode_ahead([contents[i] for i in indices], batch_size, backbone.size)
        for start, pixels in zip(range(0, len(indices), batch_size), decoded, strict=True):
            out = backbone.encode(pixels)
            arrays = {"pooled": out.pooled, "regions": out.regions}
            yield indices[start : start + batch_size], arrays

    arrays = _cached(keys, backbone.id, cache, compute, "image features", progress)
    return ImageFeatures(arrays["pooled"], arrays["regions"])


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

    arrays = _cached(keys, backbone.id, cache, compute, "text features", progress)
    return TextFeatures(arrays["pooled"], arrays["tokens"], arrays["mask"])


def _cached(
    keys: list[str],
    backbone_id: str,
    cache: FeatureCache,
    compute: Callable[[list[int]], Iterator[tuple[list[int], Arrays]]],
    desc: str,
    progress: bool,
) -> Arrays:
    """Per-item arrays for `keys`, computing only the misses (once per distinct key)."""
    found = cache.get_many(backbone_id, sorted(set(keys)))
    first_of: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key not in found:
            first_of.setdefault(key, index)
    misses = list(first_of.values())
    with tqdm(total=len(misses), desc=desc, unit="item", disable=not progress or not misses) as bar:
        for indices, arrays in compute(misses):
            entries = [
                (keys[i], {name: a[row] for name, a in arrays.items()})
                for row, i in enumerate(indices)
            ]
            cache.put_many(backbone_id, entries)
            found.update(entries)
            bar.update(len(indices))
    names = list(found[keys[0]]) if keys else []
    return {name: np.stack([found[key][name] for key in keys]) for name in names}


def _decode_ahead(contents: list[bytes], batch_size: int, size: int) -> Iterator[np.ndarray]:
    """Decoded pixel batches, the next one decoding in threads while the caller encodes."""
    batches = [contents[i : i + batch_size] for i in range(0, len(contents), batch_size)]

    def decode(batch: list[bytes]) -> np.ndarray:
        return np.stack([to_array(open_image(content), size) for content in batch])

    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(decode, batches[0])
        for following in batches[1:]:
            current = pending.result()
            pending = pool.submit(decode, following)
            yield current
        yield pending.result()
