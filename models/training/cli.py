"""`xmr train`: train one method on a corpus and write a self-describing run directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from models.config import TEXT_BACKBONES, default_method, packaged_methods
from models.device import HELP as DEVICE_HELP

if TYPE_CHECKING:
    from models.config import TrainConfig
    from models.data.corpus import Corpus

DEFAULT_CACHE = Path("artifacts/cache")


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("train", help="train a method; writes RUN/checkpoint.pt",
                            description="Train a method on a corpus; writes RUN/checkpoint.pt, "
                                        "metrics.json and curves.png.")
    p.add_argument("--data", type=Path, required=True, help="corpus directory")
    p.add_argument("--method", metavar="NAME",
                   help=f"train NAME with its shipped settings (configs/NAME.yaml): "
                        f"{', '.join(packaged_methods())} (default: {default_method()}, with "
                        "the settings of configs/default.yaml); with --config, the method "
                        "replaces the one the file names")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--config", type=Path, metavar="YAML",
                   help="your own YAML config instead of the shipped settings")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="most training epochs (default: the config's; early stopping may end "
                        "sooner)")
    p.add_argument("--seed", type=int, metavar="S",
                   help="seed of the validation carve, the initial weights and the batch order "
                        "(default: the config's, 0)")
    p.add_argument("--text-backbone", choices=TEXT_BACKBONES,
                   help="text features: minilm (English) or char-ngram (any language; fitted on "
                        "the train split) (default: the config's)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"feature cache directory (default: {DEFAULT_CACHE})")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--threads", type=thread_count, metavar="N",
                   help="torch's CPU threads (default: torch's own, one per core); beside "
                        "another CPU-heavy process, fewer keep their threads from spinning "
                        "against each other")
    p.add_argument("--skip-invalid", action="store_true",
                   help="leave out the rows of images that cannot be read, and list them, "
                        "instead of stopping at the first")
    p.set_defaults(run=run)


def thread_count(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"{count}: at least 1")
    return count


def run(args: argparse.Namespace) -> int:
    import torch

    from models.backbones.cache import FeatureCache
    from models.config import ConfigError
    from models.data.corpus import CorpusError
    from models.data.importers.report import ImportProblem
    from models.device import device_setting, resolve_device
    from models.training.trainer import train

    try:
        config, corpus = prepare(args)
        device = resolve_device(device_setting(args.device))
    except ImportProblem as problem:  # a ValueError too: the more specific answer first
        print(f"error: {problem}\n(use --skip-invalid to leave bad images out)", file=sys.stderr)
        return 2
    except (ConfigError, CorpusError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # process-wide: feature extraction and training
    checkpoint = train(config, corpus, args.out, FeatureCache(args.cache), device)
    print(f"wrote {checkpoint}")
    return 0


def prepare(args: argparse.Namespace) -> tuple[TrainConfig, Corpus]:
    """The config and the corpus to train on, every check done before any feature is extracted
    (ConfigError, CorpusError, or ImportProblem for a bad image)."""
    from models.backbones.cache import FeatureCache
    from models.config import load_config, packaged_config
    from models.data.corpus import read_corpus
    from models.data.importers.report import ImportReport
    from models.training.data import selection_for_corpus, validate
    from models.training.screening import screen_images

    source = args.config or packaged_config(args.method)
    config = load_config(source, method=args.method if args.config else None,
                         epochs=args.epochs, seed=args.seed, text_backbone=args.text_backbone)
    corpus = read_corpus(args.data)
    if args.config is None:  # the shipped settings adapt to a corpus of one caption per image
        config = selection_for_corpus(config, corpus)
    validate(config, corpus)  # unknown method or option, label levels vs the corpus
    report = ImportReport(skip_invalid=args.skip_invalid)
    corpus = screen_images(corpus, FeatureCache(args.cache), config.image_backbone, report)
    if report.skipped:
        print(report.summary(), file=sys.stderr)
        validate(config, corpus)  # the rows left must still fit the config
    return config, corpus
