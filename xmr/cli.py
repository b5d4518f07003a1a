"""`xmr COMMAND ...`: one entry point dispatching to each package's command.

Each command's parser and entry function live in its own package; the heavy imports are
deferred to the entry functions, so `xmr data` does not pay for FAISS nor `xmr serve` for the
trainer (and `xmr --help` for neither)."""

from __future__ import annotations

import argparse
import importlib

DESCRIPTION = ("Cross-modal (image <-> text) retrieval over your own data: import a corpus, "
               "train a method, evaluate it, index the corpus and serve search.")
# command -> module that defines add_parser(subparsers) and sets `run` as the default.
COMMANDS = {
    "data": "models.data.cli",
    "train": "models.training.cli",
    "eval": "models.evaluation.cli",
    "index": "index.cli",
    "serve": "service.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmr", description=DESCRIPTION,
                                     epilog="`xmr COMMAND --help` describes each command.")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)
