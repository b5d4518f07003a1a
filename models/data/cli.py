"""`xmr data ...`: import a raw corpus into the pinned corpus format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.data.corpus import read_corpus, summarize
from models.data.importers.report import ImportProblem, ImportReport


def add_parser(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="import a corpus into the pinned corpus format")
    sources = data.add_subparsers(dest="source", required=True)
    openmoji = sources.add_parser("openmoji", help="the embedded default corpus (OpenMoji)")
    openmoji.add_argument("out", type=Path)
    openmoji.add_argument("--twemoji", type=Path, metavar="DIR",
                          help="the SVG folder of the @twemoji/svg npm package (`make twemoji` "
                               "fetches it): a second view of each train emoji it draws")
    raw_corpora = {
        "wikipedia": "a corpus in the classic Wikipedia layout",
        "captions": "captioned images, no labels: the Karpathy-split JSON of COCO, Flickr8k "
                    "and Flickr30k (SRC: the dataset_*.json file, or its folder)",
    }
    for name, text in raw_corpora.items():
        source = sources.add_parser(name, help=text, description=text)
        source.add_argument("src", type=Path)
        source.add_argument("out", type=Path)
        source.add_argument("--skip-invalid", action="store_true",
                            help="leave bad items out and list them instead of stopping at the "
                                 "first")
    data.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = ImportReport(skip_invalid=getattr(args, "skip_invalid", False))
    try:
        if args.source == "openmoji":
            from models.data.importers.openmoji import import_openmoji

            items = import_openmoji(args.out, report, args.twemoji)
            if args.twemoji is not None:
                views = {i.image for i in items if i.image.startswith("images/twemoji/")}
                print(f"Twemoji views: {len(views)} train emoji")
        elif args.source == "captions":
            from models.data.importers.captions import import_captions

            import_captions(args.src, args.out, report)
        else:
            from models.data.importers.wikipedia import import_wikipedia

            import_wikipedia(args.src, args.out, report)
    except ImportProblem as problem:
        print(f"error: {problem}", file=sys.stderr)
        if hasattr(args, "skip_invalid") and problem is report.stopped_on:
            print("(use --skip-invalid to leave bad items out)", file=sys.stderr)
        return 2
    print(summarize(read_corpus(args.out)))
    if report.skipped:
        print(report.summary())
    return 0
