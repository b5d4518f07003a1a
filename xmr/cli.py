"""`xmr COMMAND ...`. Each command's parser and entry function live in its own package; the
imports are deferred so `xmr data` does not pay for FAISS nor `xmr serve` for the trainer."""

from __future__ import annotations

import argparse
import importlib

# command -> module that defines add_parser(subparsers) and sets `run` as the default.
COMMANDS = {
    "data": "models.data.cli",
    "train": "models.training.cli",
    "eval": "models.evaluation.cli",
    "index": "index.cli",
    "serve": "service.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)
