"""Feature extraction throughput, cold (empty cache) vs warm (second pass), on OpenMoji.

    python -m bench.features --data artifacts/data/openmoji [--limit N] [--repeats 3]

Writes bench/results/features.{json,md,png}. The cold pass fills a fresh cache directory;
warm passes read the same corpus back. Cold and warm run side by side in one process, so
their ratio holds even on a shared, noisy machine; warm figures are medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, command, machine, pyplot, relative, write_results
from models.backbones.cache import FeatureCache
from models.backbones.extract import image_features, text_features
from models.backbones.image import EfficientNetLite0
from models.backbones.text import MiniLM
from models.data.corpus import read_corpus


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(data: Path, limit: int | None, repeats: int) -> dict:
    corpus = read_corpus(data)
    items = list(corpus.items[:limit] if limit else corpus.items)
    paths = [corpus.image_path(item) for item in items]
    texts = [item.text for item in items]
    image_backbone, text_backbone = EfficientNetLite0(), MiniLM()
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp)
        cold_img = timed(lambda: image_features(paths, image_backbone, cache, progress=False))
        cold_txt = timed(lambda: text_features(texts, text_backbone, cache, progress=False))
        warm_img = statistics.median(
            timed(lambda: image_features(paths, image_backbone, cache, progress=False))
            for _ in range(repeats)
        )
        warm_txt = statistics.median(
            timed(lambda: text_features(texts, text_backbone, cache, progress=False))
            for _ in range(repeats)
        )
    n = len(items)
    return {
        "corpus": relative(str(data)), "items": n, "repeats": repeats,
        "machine": machine(),
        "cold": {"images_per_s": n / cold_img, "texts_per_s": n / cold_txt,
                 "seconds": cold_img + cold_txt},
        "warm": {"images_per_s": n / warm_img, "texts_per_s": n / warm_txt,
                 "seconds": warm_img + warm_txt},
        "speedup_images": cold_img / warm_img,
        "speedup_texts": cold_txt / warm_txt,
        "speedup_total": (cold_img + cold_txt) / (warm_img + warm_txt),
    }


def markdown(result: dict) -> str:
    cold, warm = result["cold"], result["warm"]
    return (
        "# Feature extraction throughput\n\n"
        f"`{result['command']}` on {result['machine']}; {result['items']} OpenMoji items; "
        f"warm = median of {result['repeats']} passes.\n\n"
        "| pass | images/s | texts/s | seconds (both) |\n|---|---|---|---|\n"
        f"| cold (empty cache) | {cold['images_per_s']:.1f} | {cold['texts_per_s']:.0f} "
        f"| {cold['seconds']:.1f} |\n"
        f"| warm (cached) | {warm['images_per_s']:.0f} | {warm['texts_per_s']:.0f} "
        f"| {warm['seconds']:.2f} |\n\n"
        f"Second pass speed-up: images {result['speedup_images']:.0f}x, texts "
        f"{result['speedup_texts']:.1f}x, both {result['speedup_total']:.0f}x.\n"
    )


def figure(result: dict) -> Any:
    fig, ax = pyplot().subplots(figsize=(6, 4))
    kinds = ["images_per_s", "texts_per_s"]
    for offset, name in ((-0.2, "cold"), (0.2, "warm")):
        ax.bar([i + offset for i in range(2)], [result[name][k] for k in kinds], 0.4, label=name)
    ax.set_xticks(range(2), ["images/s", "texts/s"])
    ax.set_yscale("log")
    ax.set_title(f"feature extraction, {result['items']} items (log scale)")
    ax.legend()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("artifacts/data/openmoji"))
    parser.add_argument("--limit", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    args = parser.parse_args()
    result = measure(args.data, args.limit, args.repeats)
    result["command"] = command("bench.features")
    write_results(args.out, "features", result, markdown(result), figure(result))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
