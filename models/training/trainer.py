"""The training loop: seeded, early-stopped on a validation part of train, never on test.

Stages meet through artifacts: the run directory gets `checkpoint.pt` (self-describing),
`metrics.json` and `curves.png`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models.backbones.cache import FeatureCache
from models.checkpoint import Checkpoint, save_checkpoint
from models.config import TrainConfig
from models.data.corpus import Corpus
from models.evaluation.keywords import image_rows, ranking_metrics
from models.evaluation.metrics import cross_modal_map
from models.evaluation.pairs import pair_recall
from models.features import FeatureSet
from models.methods import build_method
from models.methods.base import Features, Method, MethodDims
from models.training.captions import caption_queries
from models.training.data import Prepared, Split, prepare_data, validate

EMBED_CHUNK = 512


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_score: float = -1.0  # the selection score (val_score of the best epoch): mAP, or
    # pair recall on a label-free corpus


def as_tensors(features: FeatureSet, device: torch.device) -> tuple[Features, Features]:
    """A FeatureSet as the methods' input dicts, dtypes as stored (methods cast what they use)."""
    images = {
        "pooled": torch.from_numpy(features.image_pooled).to(device),
        "regions": torch.from_numpy(features.image_regions).to(device),
    }
    texts = {
        "pooled": torch.from_numpy(features.text_pooled).to(device),
        "tokens": torch.from_numpy(features.text_tokens).to(device),
        "mask": torch.from_numpy(features.text_mask).to(device),
    }
    return images, texts


@torch.no_grad()
def transformed(method: Method, features: FeatureSet, device: torch.device) -> FeatureSet:
    """The method's frozen preprocessing applied once to a whole split (in chunks)."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(features), EMBED_CHUNK):
        rows = np.arange(start, min(start + EMBED_CHUNK, len(features)))
        images, texts = as_tensors(features.subset(rows), device)
        images, texts = method.transform_images(images), method.transform_texts(texts)
        for prefix, feats in (("image", images), ("text", texts)):
            for key, value in feats.items():
                parts.setdefault(f"{prefix}_{key}", []).append(value.cpu().numpy())
    n = len(features)
    empty = np.zeros((n, 0, 0), dtype=np.float16)
    return FeatureSet(
        image_pooled=np.concatenate(parts["image_pooled"]),
        image_regions=np.concatenate(parts["image_regions"]) if "image_regions" in parts else empty,
        text_pooled=np.concatenate(parts["text_pooled"]),
        text_tokens=np.concatenate(parts["text_tokens"]) if "text_tokens" in parts else empty,
        text_mask=np.concatenate(parts["text_mask"])
        if "text_mask" in parts
        else np.zeros((n, 0), dtype=bool),
    )


@torch.no_grad()
def embed(
    method: Method, features: FeatureSet, device: torch.device, transform: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings of both modalities, in chunks so large splits fit in memory.

    `transform=False` when `features` already went through `transformed`.
    """
    method.eval()
    images, texts = [], []
    for start in range(0, len(features), EMBED_CHUNK):
        img, txt = as_tensors(
            features.subset(np.arange(start, min(start + EMBED_CHUNK, len(features)))), device
        )
        if transform:
            img, txt = method.transform_images(img), method.transform_texts(txt)
        images.append(method.embed_images(img).float().cpu().numpy())
        texts.append(method.embed_texts(txt).float().cpu().numpy())
    return np.concatenate(images), np.concatenate(texts)


def batch_order(labels: np.ndarray, config: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """One epoch's item order: shuffled, or grouped `per_class` items of one finest label.

    labels is (n, levels), coarse to fine; (n, 0) in a label-free corpus (random only)."""
    if config.sampler == "random":
        return rng.permutation(len(labels))
    fine, chunks = labels[:, -1], []
    for cls in np.unique(fine):
        members = rng.permutation(np.flatnonzero(fine == cls))
        chunks += [
            members[i : i + config.per_class] for i in range(0, len(members), config.per_class)
        ]
    return np.concatenate([chunks[i] for i in rng.permutation(len(chunks))])


def run_epoch(
    method: Method,
    optimizer: torch.optim.Optimizer,
    split: Split,
    config: TrainConfig,
    epoch: int,
    rng: np.random.Generator,
    device: torch.device,
) -> dict[str, float]:
    method.train()
    rows = (
        split.captions.one_per_image(rng)
        if config.caption_sampling == "one_per_image"
        else np.arange(len(split.items))
    )
    order = rows[batch_order(split.labels[rows], config, rng)]
    sums: dict[str, float] = {}
    batches = range(0, len(order) - 1, config.batch_size)  # a lone last pair has no negatives
    for step, start in enumerate(batches):
        rows = order[start : start + config.batch_size]
        batch = split.features.subset(rows)
        labels = [
            torch.from_numpy(split.labels[rows, level]).to(device)
            for level in range(split.labels.shape[1])
        ]
        progress = (epoch + step / len(batches)) / config.epochs
        matches = torch.from_numpy(split.captions.matches(rows)).to(device)
        losses = method.losses(*as_tensors(batch, device), labels, progress, matches)
        # the one place the loss terms are summed
        total = sum(losses.values(), torch.zeros((), device=device))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        for name, value in {**losses, "total": total}.items():
            sums[name] = sums.get(name, 0.0) + value.item() / len(batches)
    return sums


def fit(
    method: Method,
    train: Split,
    val: Split,
    config: TrainConfig,
    device: torch.device,
    quiet: bool = False,
) -> tuple[dict[str, torch.Tensor], History]:
    """Train; keep the weights of the epoch with the best validation mAP (finest level)."""
    labels = [torch.from_numpy(train.labels[:, i]).to(device) for i in range(train.labels.shape[1])]
    method.prepare(*as_tensors(train.features, device), labels)
    train = Split(train.items, transformed(method, train.features, device), train.labels)
    val_features = transformed(method, val.features, device)

    val_scores = validation_scorer(method, val, val_features, config, device)

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in method.state_dict().items()}

    if not method.trainable:  # closed-form methods (cca): nothing to iterate
        scores = val_scores()
        return snapshot(), History([{"epoch": 0, **scores}], 0, scores["val_score"])
    optimizer = torch.optim.AdamW(
        method.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    rng = np.random.default_rng(config.seed)
    history, best_state, stale = History(), {}, 0
    bar = tqdm(range(config.epochs), desc=f"train {config.method}", unit="epoch", disable=quiet)
    for epoch in bar:
        losses = run_epoch(method, optimizer, train, config, epoch, rng, device)
        scores = val_scores()
        score = scores["val_score"]
        history.epochs.append({"epoch": epoch, **losses, **scores})
        bar.set_postfix(loss=f"{losses['total']:.3f}", val=f"{score:.3f}")
        if score > history.best_val_score:
            history.best_epoch, history.best_val_score, stale = epoch, score, 0
            best_state = snapshot()
        else:
            stale += 1
            if stale >= config.patience:
                break
    return best_state, history


def validation_scorer(
    method: Method, val: Split, features: FeatureSet, config: TrainConfig, device: torch.device
) -> Callable[[], dict[str, float]]:
    """A function of no arguments giving this epoch's validation scores: finest-label avg mAP
    over the validation images (each image once, with its first caption), the keyword mAP of
    their other captions where they have some, and `val_score`, the one selection uses.
    Without labels: the pair recall of the validation images and all their captions."""
    if val.labels.shape[1] == 0:
        return pair_recall_scorer(method, val, features, device)
    first = image_rows(val.items)
    queries = caption_queries(val.items) if config.select_on == "labels_and_keywords" else None
    if config.select_on == "labels_and_keywords" and queries is None:
        raise ValueError("select_on labels_and_keywords needs images with several captions")

    def scores() -> dict[str, float]:
        images, texts = embed(method, features, device, transform=False)
        label_map = cross_modal_map(images[first], texts[first], val.labels[first, -1])["avg_map"]
        out = {"val_avg_map": label_map, "val_score": label_map}
        if queries is not None:
            found = ranking_metrics(texts[queries[1]] @ images[first].T, queries[0].relevance)
            out["val_keyword_map"] = found["map"]
            out["val_keyword_success_at_10"] = found["success_at_10"]
            out["val_score"] = (label_map + found["map"]) / 2
        return out

    return scores


def pair_recall_scorer(
    method: Method, val: Split, features: FeatureSet, device: torch.device
) -> Callable[[], dict[str, float]]:
    """`val_pair_recall` (= `val_score`): the mean of R@1/5/10 both ways, each validation image
    against all validation captions and each caption against the images."""

    def scores() -> dict[str, float]:
        images, texts = embed(method, features, device, transform=False)
        recall = pair_recall(images, texts, val.items)
        mean = float(np.mean([v for row in recall.values() for v in row.values()]))
        return {"val_pair_recall": mean, "val_score": mean}

    return scores


def train(
    config: TrainConfig,
    corpus: Corpus,
    out: Path,
    cache: FeatureCache,
    device: torch.device,
    data: Prepared | None = None,
) -> Path:
    """One run; `data` lets a benchmark reuse the features across runs of one seed."""
    data = data or prepare_data(config, corpus, cache, device)
    validate(config, corpus)
    torch.manual_seed(config.seed)
    dims = data.dims(corpus)
    method = build_method(config, dims).to(device)
    started = time.perf_counter()
    state, history = fit(method, data.train, data.val, config, device)
    seconds = time.perf_counter() - started
    write_run(out, config, corpus, data, dims, state, history, seconds)
    return out / "checkpoint.pt"


def write_run(
    out: Path,
    config: TrainConfig,
    corpus: Corpus,
    data: Prepared,
    dims: MethodDims,
    state: dict[str, torch.Tensor],
    history: History,
    seconds: float,
) -> None:
    backbones = data.backbones
    levels = [corpus.levels[i] for i in data.levels]
    metrics: dict[str, Any] = {
        "method": config.method,
        "best_epoch": history.best_epoch,
        # None on a label-free corpus (selected on pair recall: best_val_score)
        "best_val_avg_map": history.epochs[history.best_epoch].get("val_avg_map"),
        "best_val_score": history.best_val_score,
        "train_seconds": round(seconds, 2),
        "n_train": len(data.train.items),
        "n_val": len(data.val.items),
        "epochs": history.epochs,
    }
    checkpoint = Checkpoint(
        config=config.model_dump(),
        state_dict=state,
        image_dim=dims.image,
        text_dim=dims.text,
        classes=tuple(dims.classes),
        levels=tuple(levels),
        corpus_levels=tuple(corpus.levels),
        label_sets={level: tuple(names) for level, names in corpus.label_sets.items()},
        image_backbone=backbones.image.id,
        text_backbone=backbones.text.id,
        text_state=backbones.text_state(),
        metrics={k: v for k, v in metrics.items() if k != "epochs"},
    )
    save_checkpoint(out / "checkpoint.pt", checkpoint)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    plot_curves(history, out / "curves.png")


def plot_curves(history: History, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history.epochs]
    fig, (loss_ax, map_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name in history.epochs[0] if history.epochs else []:
        if not name.startswith("val_") and name != "epoch":
            loss_ax.plot(epochs, [row[name] for row in history.epochs], label=name)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="training losses")
    if loss_ax.lines:
        loss_ax.legend()
    for name in ("val_avg_map", "val_keyword_map", "val_pair_recall", "val_score"):
        if history.epochs and name in history.epochs[0]:
            map_ax.plot(epochs, [row[name] for row in history.epochs], label=name)
    map_ax.set(xlabel="epoch", ylabel="score", title="validation (part of train)")
    map_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
