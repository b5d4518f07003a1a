"""Every bad input gets a 4xx problem+json (never a 5xx), and the index does not change."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.service.conftest import Server, png

PROBLEM = "application/problem+json"


def bomb() -> bytes:
    """A 100 kB-ish PNG header claiming 100,000 x 100,000 pixels (10 gigapixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * 100_000) * 64, 9)  # first rows only
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
            + chunk(b"IEND", b""))


def upload(data: bytes, kind: str = "image/png", **fields: str) -> dict[str, Any]:
    return {"files": {"file": ("x.png", data, kind)}, "data": fields}


def raw_multipart(field: str, value: bytes) -> dict[str, Any]:
    body = (b"--XB\r\nContent-Disposition: form-data; name=\"" + field.encode()
            + b"\"\r\n\r\n" + value + b"\r\n--XB--\r\n")
    return {"content": body, "headers": {"Content-Type": "multipart/form-data; boundary=XB"}}


GOOD = png((10, 200, 90), (32, 32))
CORRUPT = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
TRUNCATED = GOOD[: len(GOOD) // 2]
T2I, I2T, ITEMS = "/v1/search/text-to-image", "/v1/search/image-to-text", "/v1/items"
KEY = "auth"  # placeholder replaced by the server's Authorization header

# (name, method, path, request kwargs, expected status or None for any 4xx)
CASES: list[tuple[str, str, str, Callable[[], dict[str, Any]], int | None]] = [
    ("corrupt image search", "POST", I2T, lambda: upload(CORRUPT), 422),
    ("corrupt image ingest", "POST", ITEMS, lambda: {**upload(CORRUPT), KEY: 1}, 422),
    ("truncated image", "POST", I2T, lambda: upload(TRUNCATED), 422),
    ("truncated image ingest", "POST", ITEMS, lambda: {**upload(TRUNCATED), KEY: 1}, 422),
    ("zero-byte image", "POST", I2T, lambda: upload(b""), 422),
    ("zero-byte image ingest", "POST", ITEMS, lambda: {**upload(b""), KEY: 1}, 422),
    ("huge image body", "POST", I2T, lambda: upload(b"\xff\xd8" + b"\0" * (3 << 20)), 413),
    ("huge base64 body", "POST", ITEMS, lambda: {
        "json": {"image_base64": "A" * (3 << 20)}, KEY: 1}, 413),
    ("decompression bomb", "POST", I2T, lambda: upload(bomb()), 413),
    ("decompression bomb ingest", "POST", ITEMS, lambda: {**upload(bomb()), KEY: 1}, 413),
    ("bomb as base64", "POST", I2T, lambda: {
        "json": {"image_base64": base64.b64encode(bomb()).decode()}}, 413),
    ("text/plain to text search", "POST", T2I, lambda: {
        "content": b"cat", "headers": {"Content-Type": "text/plain"}}, 415),
    ("no content type", "POST", T2I, lambda: {"content": b'{"text": "cat"}'}, 415),
    ("form-urlencoded to image search", "POST", I2T, lambda: {"data": {"k": "3"}}, 415),
    ("text file as the image", "POST", I2T, lambda: upload(b"hello", "text/plain"), 415),
    ("html as the image", "POST", ITEMS, lambda: {**upload(b"<html>", "text/html"), KEY: 1},
     415),
    ("xml to ingest", "POST", ITEMS, lambda: {
        "content": b"<a/>", "headers": {"Content-Type": "application/xml"}, KEY: 1}, 415),
    ("empty text", "POST", T2I, lambda: {"json": {"text": ""}}, 422),
    ("blank text", "POST", T2I, lambda: {"json": {"text": "  \n\t "}}, 422),
    ("1 MB text search", "POST", T2I, lambda: {"json": {"text": "a" * (1 << 20)}}, 413),
    ("1 MB text ingest", "POST", ITEMS, lambda: {"json": {"text": "a" * (1 << 20)}, KEY: 1},
     413),
    ("1 MB text multipart", "POST", ITEMS, lambda: {"data": {"text": "b" * (1 << 20)},
                                                   "files": {"x": ("x", b"", "text/plain")},
                                                   KEY: 1}, None),
    ("empty text ingest", "POST", ITEMS, lambda: {"json": {"text": ""}, KEY: 1}, 422),
    ("invalid UTF-8 JSON", "POST", T2I, lambda: {
        "content": b'{"text": "\xff\xfe\xfd", "k": 3}',
        "headers": {"Content-Type": "application/json"}}, 400),
    ("invalid UTF-8 multipart text", "POST", ITEMS, lambda: {
        **raw_multipart("text", b"caf\xe9 \xff"), KEY: 1}, 422),
    ("invalid UTF-8 multipart labels", "POST", I2T, lambda: {
        **raw_multipart("labels", b"\xc3\x28")}, 422),
    ("NUL in text", "POST", ITEMS, lambda: {"json": {"text": "a\x00b"}, KEY: 1}, 422),
    ("k = 0", "POST", T2I, lambda: {"json": {"text": "cat", "k": 0}}, 422),
    ("k = -1", "POST", T2I, lambda: {"json": {"text": "cat", "k": -1}}, 422),
    ("k = 10^9", "POST", T2I, lambda: {"json": {"text": "cat", "k": 10**9}}, 422),
    ("k = 10^30", "POST", T2I, lambda: {"json": {"text": "cat", "k": 10**30}}, 422),
    ("k a string", "POST", T2I, lambda: {"json": {"text": "cat", "k": "many"}}, 422),
    ("k a float", "POST", T2I, lambda: {"json": {"text": "cat", "k": 2.5}}, 422),
    ("k = 0 upload", "POST", I2T, lambda: upload(GOOD, k="0"), 422),
    ("k = -1 upload", "POST", I2T, lambda: upload(GOOD, k="-1"), 422),
    ("k = 10^9 upload", "POST", I2T, lambda: upload(GOOD, k=str(10**9)), 422),
    ("k not a number upload", "POST", I2T, lambda: upload(GOOD, k="ten"), 422),
    ("k = 0 base64", "POST", I2T, lambda: {
        "json": {"image_base64": base64.b64encode(GOOD).decode(), "k": 0}}, 422),
    ("unknown id", "GET", "/v1/items/424242", dict, 404),
    ("unknown id image", "GET", "/v1/items/424242/image", dict, 404),
    ("unknown id delete", "DELETE", "/v1/items/424242", lambda: {KEY: 1}, 404),
    ("negative id", "GET", "/v1/items/-1", dict, 422),
    ("id past int64", "GET", "/v1/items/99999999999999999999", dict, 422),
    ("id not a number", "GET", "/v1/items/abc", dict, 422),
    ("unknown job", "GET", "/v1/jobs/abc123", dict, 404),
    ("malformed job id", "GET", "/v1/jobs/..%2F..", dict, None),
    ("malformed JSON", "POST", T2I, lambda: {
        "content": b'{"text": "cat", ', "headers": {"Content-Type": "application/json"}}, 422),
    ("JSON array", "POST", T2I, lambda: {"json": ["cat"]}, 422),
    ("JSON null", "POST", T2I, lambda: {
        "content": b"null", "headers": {"Content-Type": "application/json"}}, 422),
    ("unknown field", "POST", T2I, lambda: {"json": {"text": "cat", "colour": "red"}}, 422),
    ("malformed JSON ingest", "POST", ITEMS, lambda: {
        "content": b"{", "headers": {"Content-Type": "application/json"}, KEY: 1}, 422),
    ("malformed batch", "POST", "/v1/items/batch", lambda: {"json": {"items": "x"}, KEY: 1},
     422),
    ("empty batch", "POST", "/v1/items/batch", lambda: {"json": {"items": []}, KEY: 1}, 422),
    ("batch too long", "POST", "/v1/items/batch", lambda: {
        "json": {"items": [{"text": f"t{i}"} for i in range(65)]}, KEY: 1}, 413),
    ("batch with one bad item", "POST", "/v1/items/batch", lambda: {
        "json": {"items": [{"text": "fine"}, {"image_base64": "!!!"}]}, KEY: 1}, 422),
    ("item with nothing", "POST", ITEMS, lambda: {"json": {"labels": ["art"]}, KEY: 1}, 422),
    ("labels not a list", "POST", ITEMS, lambda: {"json": {"text": "x", "labels": "art"},
                                                 KEY: 1}, 422),
    ("labels not JSON in a form", "POST", ITEMS, lambda: {
        **upload(GOOD, labels="[art"), KEY: 1}, 422),
    ("invalid base64", "POST", I2T, lambda: {"json": {"image_base64": "not base64 !!"}}, 422),
    ("base64 of text", "POST", I2T, lambda: {
        "json": {"image_base64": base64.b64encode(b"just text").decode()}}, 422),
    ("missing file field", "POST", I2T, lambda: {"files": {"other": ("x.png", GOOD,
                                                                      "image/png")}}, 422),
    ("file given as a plain field", "POST", I2T, lambda: raw_multipart("file", b"abc"), 422),
    ("unknown label level", "POST", T2I, lambda: {
        "json": {"text": "cat", "labels": {"colour": "red"}}}, 422),
    ("label filter not a dict", "POST", T2I, lambda: {"json": {"text": "cat",
                                                              "labels": ["art"]}}, 422),
    ("label filter not JSON in a form", "POST", I2T, lambda: upload(GOOD, labels="{"), 422),
    ("rerank without a scorer", "POST", T2I, lambda: {"json": {"text": "c", "rerank": True}},
     400),
    ("rerank same modality", "POST", "/v1/search/text-to-text", lambda: {
        "json": {"text": "c", "rerank": True}}, 400),
    ("missing API key", "POST", ITEMS, lambda: {"json": {"text": "no key at all"}}, 401),
    ("wrong API key", "POST", ITEMS, lambda: {"json": {"text": "wrong key"},
                                              "headers": {"Authorization": "Bearer wrong"}},
     401),
    ("wrong auth scheme", "POST", ITEMS, lambda: {
        "json": {"text": "basic"}, "headers": {"Authorization": "Basic dXNlcjpwdw=="}}, 401),
    ("missing key on delete", "DELETE", "/v1/items/1", dict, 401),
    ("missing key on batch", "POST", "/v1/items/batch", lambda: {
        "json": {"items": [{"text": "x"}]}}, 401),
    ("missing key on jobs", "POST", "/v1/jobs", lambda: {"json": {"data": "/tmp"}}, 401),
    ("job on a non-corpus", "POST", "/v1/jobs", lambda: {"json": {"data": "/nonexistent"},
                                                         KEY: 1}, 422),
    ("job with a missing checkpoint", "POST", "/v1/jobs", lambda: {
        "json": {"data": "{corpus}", "checkpoint": "/nonexistent.pt"}, KEY: 1}, 422),
    ("unknown route", "GET", "/v1/nothing", dict, 404),
    ("wrong method", "PUT", T2I, dict, 405),
]


def _request(server: Server, client: httpx.Client, method: str, path: str,
             make: Callable[[], dict[str, Any]]) -> httpx.Response:
    kwargs = make()
    if kwargs.pop(KEY, None):
        kwargs["headers"] = {**kwargs.get("headers", {}), **server.auth}
    if "json" in kwargs and isinstance(kwargs["json"], dict):
        kwargs["json"] = {k: (v.replace("{corpus}", str(server.corpus)) if isinstance(v, str)
                              else v) for k, v in kwargs["json"].items()}
    return client.request(method, path, **kwargs)


def _snapshot(server: Server, client: httpx.Client) -> tuple[Any, ...]:
    info = client.get("/v1/info").json()
    hits = client.post(T2I, json={"text": "A painting of a portrait", "k": 100}).json()
    return info["items"], [(h["id"], round(h["score"], 5)) for h in hits["results"]]


@pytest.fixture(scope="module")
def unchanged(server: Server):  # type: ignore[no-untyped-def]
    with server.client() as client:
        before = _snapshot(server, client)
        yield
        assert _snapshot(server, client) == before, "a refused request changed the index"


@pytest.mark.parametrize(("name", "method", "path", "make", "status"), CASES,
                         ids=[case[0] for case in CASES])
def test_bad_input_gets_a_4xx_problem(server: Server, unchanged: None, name: str, method: str,
                                      path: str, make: Callable[[], dict[str, Any]],
                                      status: int | None) -> None:
    with server.client() as client:
        answer = _request(server, client, method, path, make)
    assert 400 <= answer.status_code < 500, f"{name}: {answer.status_code} {answer.text[:300]}"
    if status is not None:
        assert answer.status_code == status, f"{name}: {answer.text[:300]}"
    assert answer.headers["content-type"] == PROBLEM, answer.headers
    body = answer.json()
    assert body["status"] == answer.status_code
    assert body["title"] and len(body["detail"]) > 5
    assert body["request_id"] == answer.headers["x-request-id"]
