"""Ingest, search and delete at once: no errors, and an id whose delete was acknowledged is
never returned by a search sent after the acknowledgement; concurrent upserts of one key leave
one item and one media file."""

from __future__ import annotations

import asyncio
import io
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.service.conftest import Server


@dataclass
class Churn:
    deleted_at: dict[int, float] = field(default_factory=dict)  # id -> time of the 204
    live: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"ingest": 0, "delete": 0,
                                                            "search": 0})


def png(seed: int) -> bytes:
    rng = random.Random(seed)
    out = io.BytesIO()
    Image.new("RGB", (24, 24), tuple(rng.randrange(256) for _ in range(3))).save(out, "PNG")
    return out.getvalue()


async def churn(server: Server, seconds: float, workers: int) -> Churn:
    state = Churn()
    tag = uuid.uuid4().hex[:8]
    stop = time.monotonic() + seconds
    rng = random.Random(0)

    def bad(what: str, answer: httpx.Response) -> None:
        state.errors.append(f"{what}: {answer.status_code} {answer.text[:200]}")

    async def ingester(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while time.monotonic() < stop:
            if i % 3 == 2:  # every third an image, so media files churn too
                answer = await client.post("/v1/items", headers=server.auth, files={
                    "file": ("c.png", png(hash((tag, n, i))), "image/png")})
            else:
                answer = await client.post("/v1/items", headers=server.auth, json={
                    "text": f"churn {tag} zebra crossing {n} {i}", "labels": ["art"]})
            i += 1
            if answer.status_code not in (200, 201):
                bad("ingest", answer)
                continue
            state.counts["ingest"] += 1
            item = answer.json()["items"][0]
            state.live.append((item["id"], item["modality"]))

    async def deleter(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop:
            if not state.live:
                await asyncio.sleep(0.01)
                continue
            item_id, _ = state.live.pop(rng.randrange(len(state.live)))
            answer = await client.delete(f"/v1/items/{item_id}", headers=server.auth)
            if answer.status_code != 204:
                bad("delete", answer)
                continue
            state.deleted_at[item_id] = time.monotonic()
            state.counts["delete"] += 1

    async def searcher(client: httpx.AsyncClient, n: int) -> None:
        while time.monotonic() < stop:
            sent = time.monotonic()
            if n % 2:
                answer = await client.post("/v1/search/image-to-image", files={
                    "file": ("q.png", png(n), "image/png")}, data={"k": "100"})
            else:
                answer = await client.post("/v1/search/text-to-text", json={
                    "text": f"churn {tag} zebra crossing", "k": 100})
            if answer.status_code != 200:
                bad("search", answer)
                continue
            state.counts["search"] += 1
            for hit in answer.json()["results"]:
                acked = state.deleted_at.get(hit["id"])
                if acked is not None and acked < sent:
                    state.violations.append(f"id {hit['id']} returned {sent - acked:.3f} s "
                                            "after its delete was acknowledged")

    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        await asyncio.gather(
            *(ingester(client, n) for n in range(workers)),
            *(searcher(client, n) for n in range(workers)),
            deleter(client),
        )
        for item_id, _ in state.live[:20]:  # what is left still answers consistently
            if (await client.get(f"/v1/items/{item_id}")).status_code != 200:
                state.errors.append(f"live item {item_id} missing")
        for item_id in list(state.deleted_at)[:20]:
            if (await client.get(f"/v1/items/{item_id}")).status_code != 404:
                state.errors.append(f"deleted item {item_id} still there")
        # The server is shared by the session: leave its index as the corpus made it (unlabelled
        # churn images left behind were ranked first in the page test's text search).
        for item_id, _ in state.live:
            answer = await client.delete(f"/v1/items/{item_id}", headers=server.auth)
            if answer.status_code != 204:
                bad("clean-up delete", answer)
    return state


def check(state: Churn) -> None:
    assert not state.errors, state.errors[:5]
    assert not state.violations, state.violations[:5]
    assert state.counts["ingest"] and state.counts["delete"] and state.counts["search"], \
        state.counts


def test_ingest_search_delete_concurrently_for_a_few_seconds(server: Server) -> None:
    check(asyncio.run(churn(server, seconds=5, workers=2)))


@pytest.mark.slow
def test_ingest_search_delete_concurrently_for_a_minute(server: Server) -> None:
    state = asyncio.run(churn(server, seconds=60, workers=4))
    check(state)
    assert state.counts["delete"] > 50, state.counts


def test_concurrent_upserts_of_one_key_leave_one_item_and_one_file(server: Server) -> None:
    images = []
    for n in range(16):
        out = io.BytesIO()
        Image.new("RGB", (20, 20), (15 * n, 255 - 15 * n, 99)).save(out, "PNG")
        images.append(out.getvalue())
    key = f"race-{uuid.uuid4().hex[:8]}"

    async def upsert_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return list(await asyncio.gather(*(
                client.post("/v1/items", headers=server.auth, data={"key": key},
                            files={"file": ("r.png", data, "image/png")}) for data in images)))

    def media_of_these_images() -> list[Path]:
        return [path for path in (server.index / "media").rglob("*")
                if path.is_file() and path.read_bytes() in images]

    answers = asyncio.run(upsert_all())
    assert sorted(a.status_code for a in answers) == [200] * 15 + [201], answers[0].text
    assert len({a.json()["items"][0]["id"] for a in answers}) == 1
    with server.client() as client:
        item = client.get(f"/v1/items/by-key/{key}")
        assert item.status_code == 200, item.text
        stored = client.get(item.json()["url"]).content
        files = media_of_these_images()
        assert [path.read_bytes() for path in files] == [stored], "orphan media files"
        assert client.delete(f"/v1/items/by-key/{key}", headers=server.auth).status_code == 204
    assert media_of_these_images() == []
