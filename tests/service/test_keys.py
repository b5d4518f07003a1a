"""Item keys and metadata, metadata filters and search by a stored item, over HTTP against the
real uvicorn process of the session (see conftest). Each test removes what it adds, as the
other tests share the server."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.service.conftest import Server, png

PROBLEM = "application/problem+json"
BRANDS = ("zeta", "acme", "zeta", "acme")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def by_key(key: str) -> str:
    return f"/v1/items/by-key/{quote(key, safe='')}"


def counts(client: httpx.Client) -> dict[str, int]:
    items: dict[str, int] = client.get("/v1/info").json()["items"]
    return items


def hit_keys(answer: httpx.Response) -> list[str | None]:
    assert answer.status_code == 200, answer.text
    return [hit["key"] for hit in answer.json()["results"]]


def batch_counts(client: httpx.Client) -> tuple[float, float]:
    """(encoder calls, index search calls) so far."""
    text = client.get("/metrics").text
    encoder = sum(float(n) for n in re.findall(r"xmr_encoder_batch_size_count\{[^}]*\} (\S+)",
                                               text))
    return encoder, float(re.search(r"xmr_search_batch_size_count (\S+)", text)[1])


def assert_problem(answer: httpx.Response, status: int = 422) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["detail"]


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client(headers=server.auth) as client:
        before = counts(client)
        yield client
        assert counts(client) == before, "a test left items behind"


@pytest.fixture
def shop(client: httpx.Client) -> Iterator[list[dict[str, Any]]]:
    """Four keyed image-text pairs: metadata brand zeta/acme alternating, n = 0..3."""
    images = [png((30 + 60 * i, 200 - 40 * i, 90)) for i in range(4)]
    items = [{"image_base64": b64(image), "text": f"shop item number {i} in the catalogue",
              "key": f"kw-{i}", "metadata": {"brand": BRANDS[i], "n": i, "tags": ["x", i]}}
             for i, image in enumerate(images)]
    answer = client.post("/v1/items/batch", json={"items": items})
    assert answer.status_code == 201, answer.text
    made = answer.json()["items"]
    assert [(m["key"], m["status"], m["created"]) for m in made] == [
        (key, 201, True) for i in range(4) for key in (f"kw-{i}", f"kw-{i}:text")]
    yield [{**item, "image": image, "id": m["id"]}
           for item, image, m in zip(items, images, made[::2], strict=True)]
    for i in range(4):
        for key in (f"kw-{i}", f"kw-{i}:text"):
            assert client.delete(by_key(key)).status_code == 204


def test_key_and_metadata_are_stored_returned_upserted_and_deleted(client: httpx.Client
                                                                   ) -> None:
    key = "sku/42 ü?#%&+ x"  # needs URL-encoding, and holds a '/'
    before = counts(client)
    first = client.post("/v1/items", json={
        "text": "a green kite over the dunes", "key": key, "labels": ["art"],
        "metadata": {"brand": "acme", "price": 12.5, "nested": {"a": [1, 2]}}})
    assert first.status_code == 201, first.text
    (made,) = first.json()["items"]
    assert (made["key"], made["status"], made["created"]) == (key, 201, True)
    item = client.get(f"/v1/items/{made['id']}").json()
    assert item == client.get(by_key(key)).json()
    assert item["key"] == key and item["text"] == "a green kite over the dunes"
    assert item["metadata"] == {"brand": "acme", "price": 12.5, "nested": {"a": [1, 2]}}
    top = client.post("/v1/search/text-to-text",
                      json={"text": "a green kite over the dunes", "k": 3}).json()["results"][0]
    assert (top["id"], top["key"], top["metadata"]) == (made["id"], key, item["metadata"])

    again = client.post("/v1/items", json={"text": "a red kite in the rain", "key": key,
                                           "metadata": {"brand": "zeta"}})
    assert again.status_code == 200, again.text
    assert again.json()["items"] == [{**made, "created": False, "status": 200}]
    assert counts(client)["text"] == before["text"] + 1
    replaced = client.get(by_key(key)).json()
    assert (replaced["text"], replaced["metadata"], replaced["labels"]) == (
        "a red kite in the rain", {"brand": "zeta"}, [])
    hits = client.post("/v1/search/text-to-text", json={"text": "kite", "k": 100}).json()
    assert [h["key"] for h in hits["results"]].count(key) == 1

    assert client.delete(by_key(key)).status_code == 204
    assert_problem(client.get(by_key(key)), 404)
    assert_problem(client.delete(by_key(key)), 404)
    assert_problem(client.get(f"/v1/items/{made['id']}"), 404)
    assert key not in hit_keys(client.post("/v1/search/text-to-text",
                                           json={"text": "a red kite in the rain", "k": 100}))


def test_metadata_filters_both_ways_and_image_hits_carry_their_caption(
        client: httpx.Client, shop: list[dict[str, Any]]) -> None:
    found = client.post("/v1/search/text-to-image", json={
        "text": "shop item", "k": 50, "where": {"brand": "acme"}})
    assert sorted(hit_keys(found)) == ["kw-1", "kw-3"]  # exact: no other item has a brand
    for hit in found.json()["results"]:
        assert hit["text"] == f"shop item number {hit['key'][-1]} in the catalogue"
        assert hit["metadata"]["brand"] == "acme"
    query = shop[0]["image"]
    upload = client.post("/v1/search/image-to-text",
                         files={"file": ("q.png", query, "image/png")},
                         data={"k": "50", "where": '{"brand": "zeta"}'})
    assert sorted(hit_keys(upload)) == ["kw-0:text", "kw-2:text"]
    for n in (3, 3.0):  # one JSON number
        as_json = client.post("/v1/search/image-to-text", json={
            "image_base64": b64(query), "k": 50, "where": {"n": n, "brand": "acme"}})
        assert hit_keys(as_json) == ["kw-3:text"]
    none = client.post("/v1/search/text-to-image",
                       json={"text": "shop", "k": 5, "where": {"brand": "acme", "n": 0}})
    assert hit_keys(none) == []
    labelled = client.post("/v1/search/text-to-image", json={
        "text": "shop", "k": 50, "labels": {"category": "art"}, "where": {"brand": "acme"}})
    assert hit_keys(labelled) == []  # both filters apply (the shop items have no labels)


def test_search_by_a_stored_item_matches_a_search_with_its_content(
        client: httpx.Client, shop: list[dict[str, Any]]) -> None:
    item = shop[1]
    for modality, route in (("image", "image-to-image"), ("text", "image-to-text")):
        by_content = client.post(f"/v1/search/{route}",
                                 json={"image_base64": b64(item["image"]), "k": 11}).json()
        expected = [h for h in by_content["results"] if h["id"] != item["id"]][:10]
        for name in ({"id": item["id"]}, {"key": "kw-1"}):
            answer = client.post("/v1/search/similar",
                                 json={**name, "k": 10, "modality": modality})
            assert answer.status_code == 200, answer.text
            hits = answer.json()["results"]
            assert [h["id"] for h in hits] == [h["id"] for h in expected]
            assert [h["score"] for h in hits] == pytest.approx(
                [h["score"] for h in expected], abs=1e-4)
    encoded, searched = batch_counts(client)
    for _ in range(3):
        assert client.post("/v1/search/similar",
                           json={"key": "kw-2", "modality": "text"}).status_code == 200
    assert batch_counts(client) == (encoded, searched + 3)  # the search thread, no encoder
    filtered = client.post("/v1/search/similar", json={
        "key": "kw-0", "k": 10, "modality": "image", "where": {"brand": "acme"}})
    assert sorted(hit_keys(filtered)) == ["kw-1", "kw-3"]
    assert_problem(client.post("/v1/search/similar",
                               json={"id": 987654321, "k": 3, "modality": "text"}), 404)
    assert_problem(client.post("/v1/search/similar",
                               json={"key": "no such key", "k": 3, "modality": "text"}), 404)
    for neither_or_both in ({}, {"id": item["id"], "key": "kw-1"}):
        assert_problem(client.post("/v1/search/similar",
                                   json={**neither_or_both, "k": 3, "modality": "text"}))


def test_upserts_and_deletes_keep_uploaded_files_while_an_item_holds_them(
        server: Server, client: httpx.Client) -> None:
    old, new = png((1, 2, 3)), png((250, 251, 252))
    pair = client.post("/v1/items", files={"file": ("a.png", old, "image/png")}, data={
        "text": "a pair with a key", "key": "pair-1", "metadata": '{"brand": "acme"}'})
    assert pair.status_code == 201, pair.text
    image, text = pair.json()["items"]
    assert (image["key"], text["key"]) == ("pair-1", "pair-1:text")
    assert client.get(by_key("pair-1")).json()["text"] == "a pair with a key"  # its caption
    assert client.get(by_key("pair-1:text")).json()["metadata"] == {"brand": "acme"}
    shared = client.post("/v1/items", json={"image_base64": b64(old), "key": "pair-2"})
    assert shared.status_code == 201  # keyed items may share content (and its file)
    assert shared.json()["items"][0]["id"] != image["id"]
    old_file = client.get(image["url"]).content
    assert old_file == old

    upsert = client.post("/v1/items", json={"image_base64": b64(new), "key": "pair-1"})
    assert upsert.status_code == 200 and upsert.json()["items"][0]["id"] == image["id"]
    assert client.get(image["url"]).content == new
    assert client.get(shared.json()["items"][0]["url"]).content == old  # pair-2 still has it
    assert client.delete(by_key("pair-2")).status_code == 204
    media = {path.read_bytes() for path in (server.index / "media").rglob("*.png")}
    assert old not in media and new in media  # no item holds the old bytes: their file went

    assert client.delete(by_key("pair-1")).status_code == 204
    assert client.delete(f"/v1/items/{text['id']}").status_code == 204
    media = {path.read_bytes() for path in (server.index / "media").rglob("*.png")}
    assert new not in media


BAD_ITEMS: list[tuple[str, dict[str, Any]]] = [
    ("key too long", {"text": "bad", "key": "k" * 257}),
    ("empty key", {"text": "bad", "key": ""}),
    ("key with a control character", {"text": "bad", "key": "a\u0001b"}),
    ("key not a string", {"text": "bad", "key": 5}),
    ("metadata a list", {"text": "bad", "metadata": [1, 2]}),
    ("metadata a string", {"text": "bad", "metadata": "brand=acme"}),
    ("metadata over 16 KB", {"text": "bad", "metadata": {"x": "a" * 16_400}}),
    ("pair key too long for its text", {"text": "bad", "image_base64": b64(png((9, 9, 9))),
                                        "key": "k" * 252}),
    ("upsert with bad metadata", {"text": "replaced?", "key": "stays",
                                  "metadata": {"x": "é" * 8200}}),
]


def test_bad_keys_and_metadata_are_refused_and_change_nothing(client: httpx.Client) -> None:
    made = client.post("/v1/items", json={"text": "the stored one", "key": "stays",
                                          "metadata": {"brand": "acme"}})
    assert made.status_code == 201, made.text
    stored, before = client.get(by_key("stays")).json(), counts(client)
    for name, item in BAD_ITEMS:
        for path, body in (("/v1/items", item),
                           ("/v1/items/batch", {"items": [{"text": "good one"}, item]})):
            answer = client.post(path, json=body)
            assert answer.status_code == 422, (name, path, answer.text)
            assert answer.headers["content-type"] == PROBLEM and answer.json()["detail"]
    for form in ({"text": "bad", "metadata": "not json"}, {"text": "bad", "metadata": "[1]"},
                 {"text": "bad", "key": "x" * 300}):
        assert_problem(client.post("/v1/items", files={"unused": ("u", b"", "text/plain")},
                                   data=form))
    over = client.post("/v1/items", json={"text": "bad", "metadata": {"x": "a" * 16_400}})
    assert "16384" in over.json()["detail"]
    assert_problem(client.get(by_key("k" * 257)))
    assert_problem(client.get("/v1/items/by-key/a%01b"))
    assert_problem(client.delete("/v1/items/by-key/a%01b"))
    assert counts(client) == before
    assert client.get(by_key("stays")).json() == stored
    assert client.delete(by_key("stays")).status_code == 204


@pytest.mark.parametrize("where", [{"brand": {"a": 1}}, {"tags": ["x"]}, [1], "acme", 5])
def test_a_where_filter_must_be_an_object_of_scalars(server: Server, where: Any) -> None:
    pixel = b64(png((5, 5, 5)))
    with server.client() as client:
        for path, body in (("/v1/search/text-to-image", {"text": "cat", "where": where}),
                           ("/v1/search/image-to-text", {"image_base64": pixel,
                                                         "where": where}),
                           ("/v1/search/similar", {"id": 0, "modality": "text",
                                                   "where": where})):
            assert_problem(client.post(path, json=body))
        form = client.post("/v1/search/image-to-text", data={"where": json.dumps(where)},
                           files={"file": ("q.png", base64.b64decode(pixel), "image/png")})
        assert_problem(form)
        if isinstance(where, dict):
            assert "where" in form.json()["detail"]
