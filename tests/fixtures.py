"""Builders of tiny raw corpora and seeded unit vectors for tests (importable by every test
package)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (what encoders and indexes take)."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_unit(n: int, dim: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """n seeded random unit rows of `dim`."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return unit(rng.standard_normal((n, dim)))


CATEGORIES = ["art", "biology", "geography"]
COLOURS = {"art": (200, 30, 30), "biology": (30, 160, 60), "geography": (40, 60, 200)}
ENGLISH = {
    "art": "A painting of a portrait in oil with a golden frame",
    "biology": "Cells divide and the organism grows its tissue",
    "geography": "The river flows through mountains to the sea",
}
CHINESE = {
    "art": "这是一幅油画肖像，画框是金色的。",
    "biology": "细胞分裂，生物体的组织不断生长。",
    "geography": "这条河流穿过群山，最后流入大海。",
}


CAPTIONS = [
    ["A red bus parked by the road. ", "a RED bus\n next to a kerb"],
    ["Two green parrots on a branch.", "parrots sitting in a tree", "green birds  "],
    ["A blue boat on a calm lake."],
    ["A yellow taxi in city traffic.", "taxi cab in a busy street"],
    ["A white dog runs on the grass.", "dog playing outside"],
    ["An orange sunset over the sea.", "the sun going down over water"],
]
KARPATHY_SPLITS = ["train", "val", "restval", "test", "train", "test"]


def make_karpathy_layout(src: Path, layout: str = "coco") -> Path:
    """Captioned images as the releases unpack, returning the split file. `coco`: images in
    train2014/ and val2014/ (named by `filepath`), the split file in karpathy/; `flickr30k`:
    dataset_flickr30k.json beside flickr30k-images/, no `filepath`. JPEG and PNG images."""
    images = []
    for n, (captions, split) in enumerate(zip(CAPTIONS, KARPATHY_SPLITS, strict=True)):
        colour = ((50 * n) % 256, (90 * n + 40) % 256, (130 * n + 80) % 256)
        suffix = "png" if n % 3 == 2 else "jpg"
        if layout == "coco":
            folder = "val2014" if split in ("val", "restval", "test") else "train2014"
            entry = {"filepath": folder, "filename": f"COCO_{folder}_{n:012d}.{suffix}"}
            target = src / folder / entry["filename"]
        else:
            entry = {"filename": f"{1000 + n}.{suffix}"}
            target = src / "flickr30k-images" / entry["filename"]
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64 + n, 48), colour).save(target)
        sentences = [{"raw": raw, "tokens": raw.lower().split(), "imgid": n} for raw in captions]
        images.append({**entry, "imgid": n, "split": split, "sentences": sentences})
    name = f"dataset_{layout}.json"
    split_file = src / "karpathy" / name if layout == "coco" else src / name
    split_file.parent.mkdir(parents=True, exist_ok=True)
    split_file.write_text(json.dumps({"images": images, "dataset": layout}), encoding="utf-8")
    return split_file


def make_wikipedia_layout(src: Path, per_category: int = 4, chinese: bool = False) -> Path:
    """The classic layout: lists, categories.list, texts/, images/<category>/; XML texts on odd
    items (as in the original release), plain text on even ones; numeric categories in test."""
    texts = CHINESE if chinese else ENGLISH
    (src / "texts").mkdir(parents=True)
    (src / "categories.list").write_text("\n".join(CATEGORIES) + "\n", encoding="utf-8")
    rows: dict[str, list[str]] = {"train": [], "test": []}
    for c_index, category in enumerate(CATEGORIES):
        (src / "images" / category).mkdir(parents=True)
        for n in range(per_category):
            text_id, image_id = f"t{category}{n}", f"i{category}{n}"
            body = f"{texts[category]} {n}"
            if n % 2:
                body = f"<document><title>{category}</title><text>{body}</text></document>"
            (src / "texts" / f"{text_id}.txt").write_text(body, encoding="utf-8")
            shade = tuple(min(255, v + 10 * n) for v in COLOURS[category])
            Image.new("RGB", (64, 48), shade).save(src / "images" / category / f"{image_id}.jpg")
            split = "test" if n == 0 else "train"
            label = str(c_index + 1) if split == "test" else category
            rows[split].append(f"{text_id}\t{image_id}\t{label}")
    (src / "trainset_txt_img_cat.list").write_text("\n".join(rows["train"]) + "\n", "utf-8")
    (src / "testset_txt_img_cat.list").write_text("\n".join(rows["test"]) + "\n", "utf-8")
    return src


def train_tiny_run(root: Path) -> tuple[Path, Path]:
    """(corpus dir, checkpoint) under `root`: 12 image-text pairs in 3 categories (the Wikipedia
    layout above, imported), a linear model trained 2 epochs on the CPU; backbone features
    cached in `tiny_cache(checkpoint)`. Tests make their own artifacts: none is looked up on
    the machine that runs them."""
    from xmr.cli import main as xmr

    corpus = root / "corpus"
    assert xmr(["data", "wikipedia", str(make_wikipedia_layout(root / "src")), str(corpus)]) == 0
    run = root / "run"
    assert xmr(["train", "--data", str(corpus), "--method", "linear", "--out", str(run),
                "--epochs", "2", "--seed", "0", "--cache", str(root / "cache"),
                "--device", "cpu"]) == 0
    return corpus, run / "checkpoint.pt"


def tiny_cache(checkpoint: Path) -> Path:
    """The feature cache the tiny run was trained with."""
    return checkpoint.parents[1] / "cache"
