"""How far label supervision alone goes on the frozen pooled features: a reference for quality.md.

    nice -n 10 python bench/posterior_ceiling.py --data artifacts/data/openmoji \
        --cache artifacts/cache

No cross-modal training at all: one multinomial logistic regression per modality predicts the
finest label from the pooled backbone vector, and each item is embedded as its class posterior
(cosine retrieval). Fitted once on the same train part the methods train on (the train split
minus each seed's validation carve) and once on the whole train split. Writes
bench/results/posterior_ceiling.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import RESULTS, ROOT, Data  # noqa: E402

from models.backbones.cache import FeatureCache  # noqa: E402
from models.data.corpus import read_corpus  # noqa: E402
from models.evaluation.report import evaluate_embeddings  # noqa: E402
from models.training.trainer import carve_validation  # noqa: E402


def posteriors(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(train_x), train_y)
    full = np.zeros((len(test_x), int(train_y.max()) + 1), dtype=np.float32)
    full[:, clf.classes_] = clf.predict_proba(scaler.transform(test_x))
    return full / np.linalg.norm(full, axis=1, keepdims=True)


def ceiling(data: Data, rows: list[int]) -> dict[str, float]:
    fine = len(data.corpus.levels) - 1
    labels = data.labels(data.train_items, [fine])[:, 0][rows]
    test_labels = data.labels(data.test_items, list(range(fine + 1)))
    images = posteriors(
        np.asarray(data.train.image_pooled, np.float32)[rows],
        labels,
        np.asarray(data.test.image_pooled, np.float32),
    )
    texts = posteriors(
        np.asarray(data.train.text_pooled, np.float32)[rows],
        labels,
        np.asarray(data.test.text_pooled, np.float32),
    )
    report = evaluate_embeddings(images, texts, test_labels, data.corpus.levels)
    return {
        "avg_map": report["avg_map"],
        "r1_i2t": report["recall"]["i2t"]["R@1"],
        "r1_t2i": report["recall"]["t2i"]["R@1"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "artifacts/data/openmoji")
    parser.add_argument("--cache", type=Path, default=ROOT / "artifacts/cache")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    args = parser.parse_args()
    corpus = read_corpus(args.data)
    data = Data(corpus, FeatureCache(args.cache), torch.device("cpu"))
    carved = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        kept, _ = carve_validation(data.train_items, args.val_fraction, seed)
        carved.append(ceiling(data, [data.row[item.id] for item in kept]))
    whole = ceiling(data, list(range(len(data.train_items))))
    maps = [c["avg_map"] for c in carved]
    result = {
        "command": "nice -n 10 python bench/posterior_ceiling.py " + " ".join(sys.argv[1:]),
        "train_part": {
            "avg_map_mean": statistics.mean(maps),
            "avg_map_std": statistics.stdev(maps) if len(maps) > 1 else 0.0,
            "runs": carved,
        },
        "whole_train_split": whole,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "posterior_ceiling.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "posterior_ceiling.md").write_text(
        "# Label supervision alone: logistic-regression class posteriors as embeddings\n\n"
        f"Command: `{result['command']}`\n\n"
        "| fitted on | avg mAP@all (finest) | R@1 i2t / t2i |\n|---|---|---|\n"
        f"| train part (train minus validation carve), seeds {args.seeds} | "
        f"{result['train_part']['avg_map_mean']:.3f} ± {result['train_part']['avg_map_std']:.3f} | "
        f"{statistics.mean(c['r1_i2t'] for c in carved):.3f} / "
        f"{statistics.mean(c['r1_t2i'] for c in carved):.3f} |\n"
        f"| whole train split | {whole['avg_map']:.3f} | {whole['r1_i2t']:.3f} / "
        f"{whole['r1_t2i']:.3f} |\n"
    )
    print((RESULTS / "posterior_ceiling.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
