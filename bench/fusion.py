"""How hybrid search combines its signals (models.fusion), chosen on validation, never on test:
the corpus's keywords of the checkpoint's own validation images (its carve of train) as
queries, ranked as a served query is (models.fusion.hybrid_scores) by z-scored weighted sums
and by reciprocal rank fusion over a grid of weights, and by a learned combiner (logistic
regression's non-negative coefficients as weights). The best by the mean of mAP and
success@10 is the default fusion that `xmr index build` writes into each manifest."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from bench import harness
from bench.report import render
from models.evaluation.keywords import ranking_metrics
from models.fusion import Fusion, hybrid_scores, zscore

STEP = 0.05


def validation_signals(checkpoint: Path, data: Path, cache: Path
                       ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(signals of each keyword query against each validation image, relevance)."""
    from models.backbones.cache import FeatureCache
    from models.backbones.extract import text_features
    from models.data.corpus import read_corpus
    from models.data.keywords import read_keywords
    from models.evaluation.hybrid_eval import signals
    from models.evaluation.keyword_eval import embed_queries, queries_of
    from models.inference import Encoder
    from models.training.data import carve_validation

    encoder = Encoder.load(checkpoint)
    corpus, keywords = read_corpus(data), read_keywords(data)
    if keywords is None:
        raise SystemExit(f"{data} has no keywords.json: nothing to choose a fusion on")
    _, val = carve_validation(corpus.split("train"), encoder.config.val_fraction,
                              encoder.config.seed)
    # one row per image: an emoji's own row, not its views' or keyword rows (`1F431~2`)
    items = [item for item in val if "~" not in item.id]
    queries = queries_of(items, list(range(len(items))), keywords)
    assert queries is not None
    features = FeatureCache(cache)
    images, texts = encoder.embed_features(encoder.backbones.features(corpus, items, features))
    raw = text_features(queries.texts, encoder.backbones.text, features, progress=False)
    query_vectors = embed_queries(encoder.method, raw, encoder.device)
    return signals(queries.texts, query_vectors, images, items, texts), queries.relevance


def grid() -> list[dict[str, float]]:
    steps = np.round(np.arange(0, 1 + STEP / 2, STEP), 2)
    return [{"vector": float(v), "caption": float(c), "lexical": round(1 - v - c, 2)}
            for v, c in itertools.product(steps, steps) if v + c <= 1 + 1e-9]


def learned_weights(found: dict[str, np.ndarray], relevance: np.ndarray) -> dict[str, float]:
    """Logistic regression of relevance on each signal z-scored per query."""
    from sklearn.linear_model import LogisticRegression

    x = np.stack([zscore(found[s]).ravel() for s in ("vector", "caption", "lexical")], axis=1)
    model = LogisticRegression(class_weight="balanced", max_iter=1000).fit(x, relevance.ravel())
    coef = np.clip(model.coef_[0], 0, None)
    return dict(zip(("vector", "caption", "lexical"), (coef / coef.sum()).round(3).tolist(),
                    strict=True))


def measure(found: dict[str, np.ndarray], relevance: np.ndarray) -> list[dict[str, Any]]:
    tried = [("zscore", w) for w in grid()] + [("rrf", w) for w in grid()]
    tried.append(("learned", learned_weights(found, relevance)))
    rows = []
    for family, weights in tried:
        fusion = Fusion("rrf" if family == "rrf" else "zscore", weights)
        scores = ranking_metrics(hybrid_scores(found, fusion), relevance)
        rows.append({"family": family, **fusion.as_dict(), **scores,
                     "score": (scores["map"] + scores["success_at_10"]) / 2})
    return rows


def markdown(doc: dict[str, Any]) -> str:
    return render("fusion", **doc)


def figure(doc: dict[str, Any]) -> Any:
    """Validation mAP over the weight grid, per family."""
    fig, axes = harness.pyplot().subplots(1, 2, figsize=(9, 4))
    for ax, family in zip(axes, ("zscore", "rrf"), strict=True):
        cells = np.full((round(1 / STEP) + 1,) * 2, np.nan)
        for r in (r for r in doc["tried"] if r["family"] == family):
            w = r["weights"]
            cells[round(w["caption"] / STEP), round(w["vector"] / STEP)] = r["map"]
        shown = ax.imshow(cells, origin="lower", extent=(-STEP / 2, 1 + STEP / 2) * 2)
        ax.set(title=f"{family}: validation mAP", xlabel="vector weight",
               ylabel="caption weight (lexical = the rest)")
        fig.colorbar(shown, ax=ax)
    return fig


def run(args: Any) -> dict[str, Any]:
    found, relevance = validation_signals(args.checkpoint, args.data, args.cache)
    rows = measure(found, relevance)
    best = {f: max((r for r in rows if r["family"] == f), key=lambda r: r["score"])
            for f in ("zscore", "rrf", "learned")}
    chosen = max(best.values(), key=lambda r: r["score"])
    return {"command": harness.command("bench.fusion"),
            "n_queries": int(relevance.shape[0]), "n_images": int(relevance.shape[1]),
            "alone": {n: ranking_metrics(s, relevance) for n, s in found.items()},
            "best_per_family": list(best.values()),
            "chosen": {"method": chosen["method"], "weights": chosen["weights"]}, "tried": rows}


def main() -> None:
    args = harness.arguments(__doc__, "checkpoint", "data", "cache").parse_args()
    harness.publish(args, "fusion", lambda: run(args), markdown, figure)


if __name__ == "__main__":
    main()
