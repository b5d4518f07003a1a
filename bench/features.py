"""Feature extraction throughput on OpenMoji, cold (an empty cache) against warm (the same
corpus read back), side by side in one process so that their ratio holds on a shared, noisy
machine; and each image backbone's encoding speed (what a larger backbone costs per image)."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import arguments, bars, command, machine, publish, pyplot, relative, timed
from bench.report import render
from models.backbones.cache import FeatureCache
from models.backbones.extract import IMAGE_BATCH, image_features, text_features
from models.backbones.image import IMAGE_BACKBONES, EfficientNetLite
from models.backbones.text import MiniLM
from models.data.corpus import read_corpus
from models.data.images import open_image, to_array


def measure_image_backbones(paths: list[Path], repeats: int, count: int = 128) -> dict:
    """Images/s of each image backbone (resize to its side, then its network) on the same decoded
    images, in batches of IMAGE_BATCH (the index job) and of 1 (a query, on the first
    IMAGE_BATCH), taking turns within each repeat; medians over repeats."""
    images = [open_image(p) for p in list(dict.fromkeys(paths))[:count]]

    def encode(net: EfficientNetLite, todo: list, batch: int) -> None:
        for s in range(0, len(todo), batch):
            net.encode(np.stack([to_array(i, net.size) for i in todo[s:s + batch]]))

    runs: dict[tuple[str, int], list[float]] = {
        (name, batch): [] for name in IMAGE_BACKBONES for batch in (IMAGE_BATCH, 1)}
    nets = {name: EfficientNetLite(name) for name in IMAGE_BACKBONES}
    for _ in range(repeats):
        for (name, batch), rates in runs.items():
            todo = images if batch > 1 else images[:IMAGE_BATCH]
            rates.append(len(todo) / timed(encode, nets[name], todo, batch)[0])
    return {"images": len(images), "repeats": repeats, **{name: {
        f"batch_{batch}_images_per_s": statistics.median(runs[name, batch])
        for batch in (IMAGE_BATCH, 1)} for name in IMAGE_BACKBONES}}


def measure(data: Path, limit: int, repeats: int) -> dict:
    corpus = read_corpus(data)
    items = list(corpus.items[:limit] if limit else corpus.items)
    paths = [corpus.image_path(item) for item in items]
    texts = [item.text for item in items]
    image_backbone, text_backbone = EfficientNetLite(), MiniLM()

    def cold_and_warm(run) -> tuple[float, float]:  # the first pass, the median of the next
        return timed(run)[0], statistics.median(timed(run)[0] for _ in range(repeats))

    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp)
        cold_img, warm_img = cold_and_warm(
            lambda: image_features(paths, image_backbone, cache, progress=False))
        cold_txt, warm_txt = cold_and_warm(
            lambda: text_features(texts, text_backbone, cache, progress=False))
    n = len(items)
    return {
        "corpus": relative(str(data)), "items": n, "repeats": repeats, "machine": machine(),
        **{name: {"images_per_s": n / img, "texts_per_s": n / txt, "seconds": img + txt}
           for name, img, txt in (("cold", cold_img, cold_txt), ("warm", warm_img, warm_txt))},
        "speedup_images": cold_img / warm_img, "speedup_texts": cold_txt / warm_txt,
        "speedup_total": (cold_img + cold_txt) / (warm_img + warm_txt),
        "image_backbones": measure_image_backbones(paths, repeats)}


def markdown(result: dict) -> str:
    return render("features", **result, batch=IMAGE_BATCH,
                  backbones={n: b.size for n, b in IMAGE_BACKBONES.items()})


def figure(result: dict) -> Any:
    fig, ax = pyplot().subplots(figsize=(6, 4))
    kinds = ("images_per_s", "texts_per_s")
    bars(ax, ["images/s", "texts/s"], {p: [result[p][k] for k in kinds] for p in ("cold", "warm")},
         yscale="log", title=f"feature extraction, {result['items']} items (log scale)")
    return fig


def main() -> None:
    parser = arguments(__doc__, "data", repeats=3, limit=(0, "only the first N items, 0: all"))
    args = parser.parse_args()
    publish(args, "features", lambda: {**measure(args.data, args.limit, args.repeats),
                                       "command": command("bench.features")},
            markdown, figure)


if __name__ == "__main__":
    main()
