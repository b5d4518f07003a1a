"""`xmr train`: train one method on a corpus and write a self-describing run directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.features import TEXT_BACKBONES

DEFAULT_CACHE = Path("artifacts/cache")


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("train", help="train a method; writes RUN/checkpoint.pt")
    p.add_argument("--data", type=Path, required=True, help="corpus directory")
    p.add_argument("--method", help="dhaml, aaml, acmr, dscmr, triplet, cca (or linear)")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--config", type=Path, help="YAML experiment config")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--text-backbone", choices=TEXT_BACKBONES)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache directory")
    p.add_argument("--device", default=None,
                   help="auto, cpu, cuda or cuda:N (XMR_DEVICE; default auto: cuda when present)")
    p.add_argument("--threads", type=thread_count, metavar="N",
                   help="torch's CPU threads (default: torch's own, one per core); beside "
                        "another CPU-heavy process, fewer keep their threads from spinning "
                        "against each other")
    p.set_defaults(run=run)


def thread_count(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"{count}: at least 1")
    return count


def run(args: argparse.Namespace) -> int:
    import torch

    from models.backbones.cache import FeatureCache
    from models.config import ConfigError, load_config
    from models.data.corpus import CorpusError, read_corpus
    from models.device import device_setting, resolve_device
    from models.training.data import validate
    from models.training.trainer import train

    try:
        config = load_config(args.config, method=args.method, epochs=args.epochs, seed=args.seed,
                             text_backbone=args.text_backbone)
        corpus = read_corpus(args.data)
        validate(config, corpus)  # unknown method or option, label levels vs the corpus
        device = resolve_device(device_setting(args.device))
    except (ConfigError, CorpusError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # process-wide: feature extraction and training
    checkpoint = train(config, corpus, args.out, FeatureCache(args.cache), device)
    print(f"wrote {checkpoint}")
    return 0
