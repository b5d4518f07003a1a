"""Typed dependencies (Annotated aliases): the retriever, media store and settings the lifespan
loaded, the item use cases over them, the write guard (Bearer API key), and the UTF-8 check of
multipart text fields.

Every dependency is `async def` although none awaits: FastAPI runs a plain `def` dependency in
its thread pool, which cost each search three thread hand-offs (and GIL round trips beside the
encoder thread) for what is an attribute read; bench/results/service.md.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.items import Items
from service.jobs import JobManager
from service.media import MediaStore
from service.negotiation import check_utf8_fields
from service.problems import Problem
from service.retriever import Retriever
from service.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="XMR_API_KEY, required for every write "
                                                   "when the service has one")


async def _retriever(request: Request) -> Retriever:
    retriever: Retriever | None = getattr(request.app.state, "retriever", None)
    if retriever is None:
        raise Problem(503, "the encoder and index are not loaded", headers={"Retry-After": "5"})
    return retriever


async def _media(request: Request) -> MediaStore:
    media: MediaStore | None = getattr(request.app.state, "media", None)
    if media is None:
        raise Problem(503, "the encoder and index are not loaded", headers={"Retry-After": "5"})
    return media


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _jobs(request: Request) -> JobManager:
    jobs: JobManager = request.app.state.jobs
    return jobs


RetrieverDep = Annotated[Retriever, Depends(_retriever)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MediaDep = Annotated[MediaStore, Depends(_media)]


async def _items(retriever: RetrieverDep, media: MediaDep, settings: SettingsDep) -> Items:
    return Items(retriever, media, settings.request_timeout_s)


ItemsDep = Annotated[Items, Depends(_items)]
JobsDep = Annotated[JobManager, Depends(_jobs)]


async def require_writer(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if settings.read_only:
        raise Problem(403, "this service is read-only (XMR_READ_ONLY)")
    if settings.api_key is None:
        return
    challenge = {"WWW-Authenticate": 'Bearer realm="xmr"'}
    if credentials is None:
        raise Problem(401, "this write needs an API key: send 'Authorization: Bearer <key>'",
                      headers=challenge)
    expected = settings.api_key.get_secret_value().encode()
    if not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise Problem(401, "wrong API key", headers=challenge)


Writer = Depends(require_writer)
Utf8Fields = Depends(check_utf8_fields)
