"""`xmr serve [--index INDEX] [--checkpoint CKPT] [--host H] [--port P]`: every flag also has
an XMR_* environment variable (service.settings); flags win."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.settings import Settings


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("serve", help="serve search, ingestion and the search page")
    p.add_argument("--index", help="index directory (XMR_INDEX)")
    p.add_argument("--checkpoint", help="checkpoint.pt (XMR_CHECKPOINT)")
    p.add_argument("--host", help="address to bind (XMR_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (XMR_PORT, default 8000)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from service.settings import Settings

    overrides = {key: getattr(args, key) for key in ("index", "checkpoint", "host", "port")}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        for error in err.errors():
            where = ".".join(str(part) for part in error["loc"])
            print(f"error: {where + ': ' if where else ''}{error['msg']}", file=sys.stderr)
        return 2

    from service.app import create_app

    serve(create_app(settings), settings)
    return 0


def serve(app: FastAPI, settings: Settings) -> None:
    """uvicorn as `xmr serve` runs it (bench/web_overhead.py serves its stub app this way)."""
    import uvicorn

    from service.logging import log_config

    uvicorn.run(app, host=settings.host, port=settings.port,
                log_config=log_config(settings.log_level), timeout_graceful_shutdown=10,
                server_header=False)
