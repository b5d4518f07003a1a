"""The app factory. The lifespan loads one encoder and one index (off the event loop) and
closes them; routes are thin and get what they need through service.deps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from service import problems
from service.edge import EdgeMiddleware
from service.jobs import JobManager
from service.media import MediaStore
from service.metrics import Metrics
from service.negotiation import negotiated_openapi
from service.retriever import Retriever
from service.routes import health, items, jobs, search
from service.settings import Settings

log = logging.getLogger("service")
STATIC = Path(__file__).parent / "static"

DESCRIPTION = """
Cross-modal retrieval: search images with text and texts with images in one shared embedding
space (see the README). Every error is an RFC 9457 problem (`application/problem+json`).
Writes (`/v1/items`, `/v1/jobs`) need `Authorization: Bearer <XMR_API_KEY>` when the service
has a key. Images on the search page: [OpenMoji](https://openmoji.org/), CC BY-SA 4.0, and
[Twemoji](https://github.com/jdecked/twemoji), CC BY 4.0 (Twitter, Inc and other contributors).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """`settings` None: read from the environment. Its device is resolved here, once (auto ->
    cuda or cpu; cuda on a machine without one raises ValueError)."""
    settings = resolve_device(settings or Settings())
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        retriever = await asyncio.to_thread(Retriever.load, settings, metrics.observe_batch)
        app.state.media = MediaStore(retriever.media_dir)
        app.state.retriever = retriever
        log.info("ready: %s on %s", settings.checkpoint, settings.index)
        try:
            yield
        finally:
            await app.state.jobs.close()
            app.state.media.close()
            app.state.retriever = None
            await asyncio.to_thread(retriever.close)

    # /docs: Swagger UI from the script and style the fastapi-offline wheel ships, served under
    # /static-offline-docs, so the docs need no network either. No ReDoc: its page fetches
    # its logo from the vendor's site.
    app = FastAPIOffline(title="xmr: cross-modal retrieval", version="1.0.0",
                         description=DESCRIPTION, lifespan=lifespan, redoc_url=None)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.retriever = None
    app.state.jobs = JobManager(settings, lambda: app.state.retriever)
    app.openapi = lambda: negotiated_openapi(app)  # type: ignore[method-assign]
    problems.install(app)
    for module in (search, items, jobs, health):
        app.include_router(module.router)
    metrics.watch(lambda: _gauges(app))

    app.add_middleware(EdgeMiddleware, max_bytes=settings.max_body_bytes,
                       timeout_s=settings.request_timeout_s, metrics=metrics)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


def resolve_device(settings: Settings) -> Settings:
    from models.inference import resolve_device as resolve

    return settings.model_copy(update={"device": str(resolve(settings.device))})


def _gauges(app: FastAPI) -> dict[str, float]:
    retriever: Retriever | None = app.state.retriever
    if retriever is None:
        return {}
    return retriever.gauges()
