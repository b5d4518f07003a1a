"""`xmr serve [--index INDEX] [--checkpoint CKPT] [--host H] [--port P] [--device D]
[--workers N]`: every flag also has an XMR_* environment variable (service.settings); flags
win."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING

from models.device import HELP as DEVICE_HELP

MADE_HERE = "_XMR_METRICS_MADE"  # the metrics directory serve_workers made, removed at the end

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.settings import Settings


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("serve", help="serve search, ingestion and the search page")
    p.add_argument("--index", help="index directory (XMR_INDEX)")
    p.add_argument("--checkpoint", help="checkpoint.pt (XMR_CHECKPOINT)")
    p.add_argument("--host", help="address to bind (XMR_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (XMR_PORT, default 8000)")
    p.add_argument("--device", help=f"for the encoder: {DEVICE_HELP}")
    p.add_argument("--workers", type=int,
                   help="server processes on one port, sharing the index (XMR_WORKERS, default 1)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from index.settings import setting_problems
    from service.settings import Settings

    flags = ("index", "checkpoint", "host", "port", "device", "workers")
    given = {key: getattr(args, key) for key in flags if getattr(args, key) is not None}
    try:
        settings = Settings(**given)
    except ValidationError as err:
        for problem in setting_problems(err, given):
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        return serve_workers(settings, given)

    from service.app import create_app

    try:
        app = create_app(settings)
    except ValueError as err:  # XMR_DEVICE=cuda without a CUDA device
        print(f"error: device: {err}", file=sys.stderr)
        return 2
    serve(app, app.state.settings)
    return 0


def serve(app: FastAPI, settings: Settings) -> None:
    """uvicorn as `xmr serve` runs it."""
    import uvicorn

    from service.logging import log_config

    uvicorn.run(app, host=settings.host, port=settings.port,
                log_config=log_config(settings.log_level), timeout_graceful_shutdown=10,
                server_header=False)


def serve_workers(settings: Settings, given: dict[str, object]) -> int:
    """`settings.workers` processes of the app on one socket, under uvicorn's supervisor (which
    starts a process again when one dies). The processes inherit the supervisor's environment:
    it holds the settings (the flags as XMR_* variables) and the directory where every process
    writes its metrics and every /metrics reads them all (prometheus_client's multiprocess
    mode, which reads PROMETHEUS_MULTIPROC_DIR). Without that directory this command first
    runs itself again with one made for it (the same process, a new program image), so that
    no environment is changed under running code."""
    from service.metrics import MULTIPROCESS

    if not os.environ.get(MULTIPROCESS):
        made = tempfile.mkdtemp(prefix="xmr-metrics-")
        env = {**os.environ, **{f"XMR_{key.upper()}": str(value) for key, value in given.items()},
               MULTIPROCESS: made, MADE_HERE: made}
        os.execve(sys.executable, [sys.executable, "-m", "xmr", "serve"], env)
    try:
        return supervise(settings)
    finally:
        if os.environ.get(MADE_HERE) == os.environ[MULTIPROCESS]:
            shutil.rmtree(os.environ[MULTIPROCESS], ignore_errors=True)


def supervise(settings: Settings) -> int:
    """uvicorn's supervisor over `settings.workers` processes of the app; 2 when one failed to
    start (which stops them all)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from service.logging import log_config

    config = uvicorn.Config("service.app:create_app", factory=True, host=settings.host,
                            port=settings.port, workers=settings.workers,
                            log_config=log_config(settings.log_level),
                            timeout_graceful_shutdown=10, server_header=False)
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        print("error: a server process failed to start (its log is above)", file=sys.stderr)
        return 2
    return 0
