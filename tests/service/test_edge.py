"""The edge middleware in-process (no model): an error no handler takes is still a problem
carrying the request id, in the answer and on the log line."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from service.app import create_app
from service.logging import RequestIdFilter, accept_request_id
from service.settings import Settings


class BrokenEngine:
    """Enough of a Retriever for the search route, whose search fails unexpectedly."""

    levels = ()
    checkpoint_id = "0" * 16
    method_name = "stub"
    can_rerank = False

    async def search(self, *args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("a bug")


def test_an_unexpected_error_is_a_500_problem_with_the_request_id(
        caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Settings(read_only=True))
    app.state.retriever = BrokenEngine()  # the lifespan (which would load a model) never runs
    caplog.handler.addFilter(RequestIdFilter())

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            return await client.post("/v1/search/text-to-image", json={"text": "cat"},
                                     headers={"X-Request-ID": "trace-500"})

    with caplog.at_level(logging.ERROR):
        answer = asyncio.run(ask())
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["x-request-id"] == "trace-500"
    assert answer.json()["request_id"] == "trace-500"
    assert "trace-500" in answer.json()["detail"]
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors and all(record.request_id == "trace-500" for record in errors)


def test_request_ids_are_new_for_every_request_unless_the_client_gives_a_plain_one() -> None:
    made = [accept_request_id(None) for _ in range(1000)]
    assert len(set(made)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    assert accept_request_id(b"trace-abc-123") == "trace-abc-123"
    assert accept_request_id(b"bad id with spaces") not in {"bad id with spaces", made[-1]}
