"""Retrieval quality of every method and the thesis ablations, several seeds, on OpenMoji.

Each method starts from its tuned config (configs/<method>.yaml, tuned on the validation part
of train only: `--val-only`), selects its model on that seed's validation carve and is scored
once on the test split: label mAP, the keyword queries people type, the exact item
(models.evaluation.keywords) and the modality gap of its test embeddings. Backbone features
are read from the cache once and shared, so the runs differ only in the method; each ablation
(ABLATIONS) takes one part out of a method.
"""

from __future__ import annotations

import json
import operator
import statistics
import time
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from bench import harness
from bench.harness import arguments, command, machine, relative, timed
from bench.quality_report import ablations, figure, keyword_references, markdown
from models.backbones.cache import FeatureCache
from models.config import TrainConfig, check_levels, packaged_config
from models.data.corpus import Corpus, read_corpus
from models.data.keywords import read_keywords
from models.evaluation.keyword_eval import evaluate_keywords
from models.evaluation.metrics import average_precisions_of_scores
from models.evaluation.modality_gap import modality_gap
from models.evaluation.report import evaluate_embeddings
from models.features import Backbones, FeatureSet
from models.methods import build_method
from models.training.data import Prepared, Split, carve_validation
from models.training.trainer import as_tensors, embed, fit, transformed

TEST_ITEMS_TRAINED = "dhaml-test-items-trained"
METHODS = ["cca", "linear", "triplet", "acmr", "dscmr", "dhaml", "aaml"]
# variant -> (method, overrides of its config; "options" are merged into the config's)
ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "dhaml-no-adversary": ("dhaml", {"options": {"adv_weight": 0.0}}),
    "dhaml-single-level": ("dhaml", {"levels": "FINEST"}),
    "aaml-no-adversary": ("aaml", {"options": {"adv_weight": 0.0}}),
    "aaml-no-attention": ("aaml", {"options": {"attention": False}}),
    "aaml-triplet": ("aaml", {"options": {"loss": "triplet"}}),
    "aaml-all-informative": ("aaml", {"options": {"hardest": False}}),
    # not a thesis claim: our instance term (the paired item must beat its classmates)
    "dhaml-no-instance": ("dhaml", {"options": {"instance_weight": 0.0, "instance_level": False}}),
    # a diagnostic, not a method: the test images join training with their names (never their
    # keywords), so its keyword figures are what the same head reaches on items it has seen
    TEST_ITEMS_TRAINED: ("dhaml", {}),
}
RERANK_K = 20
VAL_KEYS = ("val_avg_map", "val_keyword_map", "val_keyword_success_at_10")
COMMAND = command("bench.quality")
# what describes a run in its result, before what is derived from its runs
RUN_KEYS = ("corpus", "split", "seeds", "levels", "complete", "command", "machine")


def variant_config(name: str, corpus: Corpus, seed: int, extra: dict[str, Any]) -> TrainConfig:
    method, overrides = ABLATIONS.get(name, (name, {}))
    raw = yaml.safe_load(packaged_config(method).read_text()) or {}
    for source in (overrides, extra):
        for key, value in source.items():
            if key == "options":
                raw["options"] = {**raw.get("options", {}), **value}
            else:
                raw[key] = [corpus.levels[-1]] if value == "FINEST" else value
    return TrainConfig(**{**raw, "seed": seed})


class Data:
    """All train and test features of one image backbone, read once (again only when a run
    asks for another); splits per seed are row subsets."""

    def __init__(self, corpus: Corpus, cache: FeatureCache, device: torch.device) -> None:
        self.corpus, self.device, self.cache = corpus, device, cache
        self.keywords = read_keywords(corpus.root)
        self.train_items, self.test_items = corpus.split("train"), corpus.split("test")
        self.row = {item.id: i for i, item in enumerate(self.train_items)}
        self.image_backbone = ""

    def use(self, image_backbone: str) -> None:
        if image_backbone != self.image_backbone:
            self.backbones = Backbones.build("minilm", self.device, image_backbone=image_backbone)
            self.train = self.backbones.features(self.corpus, self.train_items, self.cache)
            self.test = self.backbones.features(self.corpus, self.test_items, self.cache)
            self.image_backbone = image_backbone

    def labels(self, items: list, levels: list[int]) -> np.ndarray:
        return np.stack([self.corpus.label_index(i, items) for i in levels], axis=1)

    def splits(self, config: TrainConfig) -> tuple[Split, Split, list[int]]:
        levels = check_levels(config, self.corpus.levels)
        carved = carve_validation(self.train_items, config.val_fraction, config.seed)
        train, val = (Split(items, self.train.subset([self.row[item.id] for item in items]),
                            self.labels(items, levels)) for items in carved)
        return train, val, levels

    def with_test_items(self, train: Split, levels: list[int]) -> Split:
        """`train` plus every test image with its name (the TEST_ITEMS_TRAINED diagnostic)."""
        features = FeatureSet(*(np.concatenate([getattr(train.features, f), getattr(self.test, f)])
                                for f in FeatureSet.__dataclass_fields__))
        return Split(train.items + self.test_items, features,
                     np.concatenate([train.labels, self.labels(self.test_items, levels)]))


@torch.no_grad()
def rerank_map(method, test: FeatureSet, labels: np.ndarray, device: torch.device) -> dict:
    """mAP@all when the top RERANK_K of the embedding ranking are re-ordered by pair_scores."""
    method.eval()
    img, txt = as_tensors(transformed(method, test, device), device)
    e_img, e_txt = method.embed_images(img), method.embed_texts(txt)
    cosine = (e_img @ e_txt.T).numpy()
    cross = np.zeros_like(cosine)
    for start in range(0, len(test), 64):
        rows = slice(start, start + 64)
        part = {k: v[rows] for k, v in txt.items()}
        cross[:, rows] = method.pair_scores(img, part).numpy()
    out = {}
    for name, base, full in (("i2t", cosine, cross), ("t2i", cosine.T, cross.T)):
        scores = base.copy()
        top = np.argsort(-base, axis=1)[:, :RERANK_K]
        np.put_along_axis(scores, top, 10.0 + np.take_along_axis(full, top, axis=1), axis=1)
        out[f"{name}_map"] = float(average_precisions_of_scores(scores, labels, labels).mean())
    out["avg_map"] = (out["i2t_map"] + out["t2i_map"]) / 2
    return out


def run_one(data: Data, name: str, seed: int, extra: dict, val_only: bool) -> dict[str, Any]:
    config = variant_config(name, data.corpus, seed, extra)
    data.use(config.image_backbone)
    train, val, levels = data.splits(config)
    if name == TEST_ITEMS_TRAINED:
        train = data.with_test_items(train, levels)
    torch.manual_seed(seed)
    dims = Prepared(data.backbones, levels, train, val).dims(data.corpus)
    method = build_method(config, dims).to(data.device)
    seconds, (state, history) = timed(fit, method, train, val, config, data.device, quiet=True)
    method.load_state_dict(state)
    best, curve = history.epochs[history.best_epoch], [r["val_avg_map"] for r in history.epochs]
    row: dict[str, Any] = {
        "variant": name, "seed": seed, "train_seconds": round(seconds, 1),
        "best_epoch": history.best_epoch, "epochs_run": len(history.epochs),
        **{key: best.get(key) for key in VAL_KEYS},
        "val_score": history.best_val_score,  # epochs to 95% of the best validation mAP
        "epochs_to_95": next(i for i, v in enumerate(curve) if v >= 0.95 * max(curve)) + 1,
        "val_curve": [round(v, 4) for v in curve],
    }
    if val_only:
        return row
    all_levels = data.labels(data.test_items, list(range(len(data.corpus.levels))))
    images, texts = embed(method, data.test, data.device)
    row["test"] = evaluate_embeddings(images, texts, all_levels, data.corpus.levels)
    row["gap"] = modality_gap(images, texts)
    if data.keywords is not None:
        row["keywords"] = evaluate_keywords(
            method, data.backbones, data.test_items, data.test, images, data.keywords, data.cache,
            data.device, {item.text for item in data.train_items}, text_vectors=texts)
    if config.method == "dhaml" and len(levels) > 1:
        method.retrieval = "concat"
        row["test_concat"] = evaluate_embeddings(*embed(method, data.test, data.device),
                                                 all_levels, data.corpus.levels)
        method.retrieval = "fine"
    if method.can_rerank:
        row["rerank"] = rerank_map(method, data.test, all_levels[:, -1], data.device)
    return row


def summarize(rows: list[dict], levels: tuple[str, ...]) -> dict[str, Any]:
    def agg(get) -> dict[str, float]:
        values = [get(r) for r in rows]  # the seeds' mean and sample standard deviation
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return {"mean": round(statistics.mean(values), 4), "std": round(std, 4)}

    def at(*path: str) -> dict[str, float]:  # a measure by its keys in each run's row
        return agg(lambda r: reduce(operator.getitem, path, r))

    avg = at("test", "avg_map")
    out: dict[str, Any] = {
        "avg_map_mean": avg["mean"], "avg_map_std": avg["std"],
        "i2t_map": at("test", "i2t_map"), "t2i_map": at("test", "t2i_map"),
        "levels": {lv: at("test", "levels", lv, "avg_map") for lv in levels},
        "hierarchical_map": at("test", "hierarchical", "avg_map"),
        "recall": {d: {k: at("test", "recall", d, k) for k in ("R@1", "R@5", "R@10")}
                   for d in ("i2t", "t2i")},
        "paired_r1": agg(lambda r: paired_recall(r, "R@1")), "val_avg_map": at("val_avg_map"),
        "modality_classifier_acc": at("gap", "modality_classifier_acc"),
        "paired_cosine": at("gap", "paired_cosine"), "seeds": [r["seed"] for r in rows],
        "epochs_to_95": at("epochs_to_95"), "train_seconds": at("train_seconds"),
    }
    if all("test_concat" in r for r in rows):
        out["concat_retrieval"] = {
            "avg_map": at("test_concat", "avg_map"),
            "levels": {lv: at("test_concat", "levels", lv, "avg_map") for lv in levels},
            "hierarchical_map": at("test_concat", "hierarchical", "avg_map"),
        }
    if all("rerank" in r for r in rows):
        out["rerank_top20_avg_map"] = at("rerank", "avg_map")
    if all(r.get("keywords") for r in rows):
        out.update(keyword_summary(rows, at))
        out["paired_r10"] = agg(lambda r: paired_recall(r, "R@10"))
    return out


def paired_recall(row: dict, k: str) -> float:
    """The exact item found, both directions' mean."""
    return (row["test"]["recall"]["i2t"][k] + row["test"]["recall"]["t2i"][k]) / 2


def keyword_summary(rows: list[dict], at) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("map", "success_at_10"):
        stats = at("keywords", key)
        out[f"keyword_{key}"], out[f"keyword_{key}_std"] = stats["mean"], stats["std"]
    if all("hybrid" in r["keywords"] for r in rows):
        out["keyword_hybrid"] = {key: at("keywords", "hybrid", key)["mean"]
                                 for key in ("map", "success_at_10", "exact_r1")}
        out["keyword_exact_r1"] = at("keywords", "exact_r1")["mean"]
    if all("seen" in r["keywords"] for r in rows):
        out["keyword_by_query"] = {part: {
            "n_queries": rows[0]["keywords"][part]["n_queries"],
            "map": at("keywords", part, "map")["mean"],
            "success_at_10": at("keywords", part, "success_at_10")["mean"],
            "caption_search": rows[0]["keywords"][part]["caption_search"],
        } for part in ("seen", "unseen")}
    return out


def write_results(out: Path, run: dict, rows: list[dict], wall_seconds: float) -> dict:
    """OUT/quality.*: `run` (what describes the run, from corpus to machine), each variant's
    summary, the ablations' verdicts and the keyword references, all derived from `rows`."""
    levels = tuple(run["levels"])
    summary = {n: summarize([r for r in rows if r["variant"] == n], levels)
               for n in dict.fromkeys(r["variant"] for r in rows)}
    result = {**run, "methods": {n: s for n, s in summary.items() if n in METHODS},
              "ablation_runs": {n: s for n, s in summary.items() if n not in METHODS},
              "ablations": ablations(summary, levels),
              "keyword_references": keyword_references(rows),
              "wall_seconds": round(wall_seconds, 1), "runs": rows}
    harness.write_results(out, "quality", result, markdown(result), figure(result))
    return result


def main() -> int:
    parser = arguments(__doc__, "data", "cache", seeds="0,1,2",
                       variants=",".join(METHODS + list(ABLATIONS)),
                       override=("{}", "tuning: JSON merged into every config"), extra_variants=(
                           "{}", 'tuning: JSON {"name": ["method", {overrides}]}, more variants'))
    parser.add_argument("--val-only", action="store_true",
                        help="tuning: report validation mAP only, never touch test")
    args = parser.parse_args()
    if args.render_only:  # the summaries, derived from the runs, are derived again
        old = json.loads((args.out / "quality.json").read_text())
        run = {k: v for k, v in old.items() if k in RUN_KEYS}
        print(markdown(write_results(args.out, run, old["runs"], old["wall_seconds"])))
        return 0
    # one thread: on shared, oversubscribed cores OpenMP threads spin-wait on each other
    torch.set_num_threads(1)
    started = time.perf_counter()
    corpus = read_corpus(args.data)
    data = Data(corpus, FeatureCache(args.cache), torch.device("cpu"))
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    extra = json.loads(args.override)
    ABLATIONS.update({n: (m, o) for n, (m, o) in json.loads(args.extra_variants).items()})
    rows: list[dict] = []

    def save(complete: bool) -> dict:
        run = {"corpus": relative(str(args.data)), "split": "test", "seeds": seeds,
               "levels": list(corpus.levels), "complete": complete, "command": COMMAND,
               "machine": machine()}
        return write_results(args.out, run, rows, time.perf_counter() - started)

    # seed-major: every variant gets its first seed before any gets its last, so a run cut
    # short by the clock still covers every variant (results are rewritten after each run)
    for seed in seeds:
        for name in variants:
            row = run_one(data, name, seed, extra, args.val_only)
            rows.append(row)
            shown = row["test"]["avg_map"] if "test" in row else float("nan")
            print(f"{name:24s} seed {seed} val {row['val_avg_map']:.4f} test {shown:.4f} "
                  f"epochs {row['epochs_run']} ({row['train_seconds']:.0f}s)", flush=True)
            if not args.val_only:
                save(complete=False)
    if args.val_only:
        for name in variants:
            picked = [r for r in rows if r["variant"] == name]
            means = {k: statistics.mean(r[k] for r in picked) for k in VAL_KEYS if picked[0][k]}
            print(f"VAL {name:24s} {json.dumps(extra)} "
                  + " ".join(f"{k[4:]} {v:.4f}" for k, v in means.items()))
        return 0
    print(markdown(save(complete=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
