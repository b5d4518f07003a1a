"""`xmr eval`: evaluate a checkpoint on a corpus split; writes the pinned JSON, a markdown
table beside it and a precision-recall PNG."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.device import HELP as DEVICE_HELP
from models.device import RUNTIMES

DEFAULT_CACHE = Path("artifacts/cache")


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "eval", help="mAP@all, per level, hierarchy-weighted, Recall@K, keyword queries"
    )
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="corpus directory")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--json", type=Path, required=True, help="report JSON (markdown and PNG beside)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache directory")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--runtime", default="torch", choices=RUNTIMES,
                   help="what embeds the texts and keyword queries: torch from cached backbone "
                        "features, or an ONNX runtime from the raw texts, as the service does")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from models.backbones.cache import FeatureCache
    from models.checkpoint import CheckpointError
    from models.data.corpus import CorpusError, read_corpus
    from models.data.keywords import read_keywords
    from models.device import device_setting, resolve_device
    from models.evaluation.keyword_eval import evaluate_keywords
    from models.evaluation.pairs import evaluate_pairs
    from models.evaluation.report import evaluate_embeddings, markdown, plot_precision_recall
    from models.inference import Encoder

    try:
        device = resolve_device(device_setting(args.device))
        corpus = read_corpus(args.data)
        keywords = read_keywords(args.data)
        encoder = Encoder.load(args.checkpoint, device, runtime=args.runtime)
    except (CorpusError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if encoder.text_runtime != args.runtime:
        print(f"error: --runtime {args.runtime} cannot run here (see the warning above)",
              file=sys.stderr)
        return 2
    encode = None if args.runtime == "torch" else encoder.encode_texts
    items = corpus.split(args.split)
    if not items:
        print(f"error: {args.data}: no {args.split} items", file=sys.stderr)
        return 2
    cache = FeatureCache(args.cache)
    features = encoder.backbones.features(corpus, items, cache)
    images, texts = encoder.embed_features(features)
    if encode is not None:
        texts = encode([item.text for item in items])
    labels = None
    if corpus.labelled:
        labels = np.stack(
            [np.asarray(corpus.label_index(i, items)) for i in range(len(corpus.levels))], axis=1
        )
        scores = evaluate_embeddings(images, texts, labels, corpus.levels)
    else:
        scores = evaluate_pairs(images, texts, items)
    report = {
        "method": encoder.method_name,
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "split": args.split,
        "runtime": args.runtime,
        **scores,
    }
    if keywords is not None:
        seen = {item.text for item in corpus.split("train")} if args.split == "test" else None
        found = evaluate_keywords(encoder.method, encoder.backbones, items, features, images,
                                  keywords, cache, device, seen, encode, texts)
        if found is not None:
            report["keywords"] = found
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    args.json.with_suffix(".md").write_text(markdown(report))
    if labels is not None:  # precision and recall over labels: none without them
        plot_precision_recall(
            images,
            texts,
            labels[:, -1],
            args.json.with_name(args.json.stem + "-pr.png"),
            f"{encoder.method_name}, {args.split}, level {corpus.levels[-1]}",
        )
    print(markdown(report))
    return 0
