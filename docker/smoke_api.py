"""The requests docker/smoke.sh and docker/compose-smoke.sh make against a running container.

Standard library only (it runs on the host, outside any venv). SMOKE_URL is the service's
127.0.0.1 base URL, SMOKE_API_KEY the key the container was started with; given SMOKE_ANSWERS,
the answers are written there as JSON. Exits non-zero, with the failing request, on the first
unexpected answer.

  1. text-to-image search for "cat": hits best first, each with a fetchable image URL;
  2. image-to-text search with the top hit's own bytes (the encoder's other half);
  3. ingestion: a write without the key is refused (401); a new text item is created (201),
     fetched back, re-sent (200, same id, created=false), deleted (204), then gone (404);
     the top hit's image re-ingested as base64 lands on its existing id (content dedupe).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request

URL = os.environ["SMOKE_URL"].rstrip("/")
KEY = os.environ["SMOKE_API_KEY"]


def call(method: str, path: str, body: dict | None = None, *, key: bool = False,
         expect: tuple[int, ...] = (200,)) -> tuple[int, dict | bytes]:
    headers = {"Accept": "application/json, image/*"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if key:
        headers["Authorization"] = f"Bearer {KEY}"
    request = urllib.request.Request(URL + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
            kind = response.headers.get_content_type()
    except urllib.error.HTTPError as err:
        status, raw, kind = err.code, err.read(), err.headers.get_content_type()
    if status not in expect:
        sys.exit(f"FAIL: {method} {path} -> {status} (expected {expect}): {raw[:500]!r}")
    return status, (json.loads(raw) if kind.endswith("json") and raw else raw)


def search(answers: dict) -> tuple[dict, bytes]:
    _, answer = call("POST", "/v1/search/text-to-image", {"text": "cat", "k": 5})
    hits = answer["results"]
    assert 0 < len(hits) <= 5, hits
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True), scores
    assert all(hit["modality"] == "image" for hit in hits), hits
    top = hits[0]
    _, image = call("GET", top["url"])
    assert isinstance(image, bytes) and image[:8] == b"\x89PNG\r\n\x1a\n", image[:16]
    print(f"text-to-image 'cat': {len(hits)} hits; top id {top['id']} {top['labels']} "
          f"score {scores[0]:.3f}, image {len(image)} bytes")
    answers["text_to_image"] = {"query": "cat", "hits": [
        {k: hit[k] for k in ("id", "labels", "score")} for hit in hits]}

    _, answer = call("POST", "/v1/search/image-to-text",
                     {"image_base64": base64.b64encode(image).decode(), "k": 3})
    texts = [hit["text"] for hit in answer["results"]]
    assert texts and all(isinstance(t, str) for t in texts), answer
    print(f"image-to-text with that image: {texts}")
    answers["image_to_text"] = {"query": f"the image of item {top['id']}", "texts": texts}
    return top, image


def ingest(answers: dict, top: dict, image: bytes) -> None:
    """Each request's status lands in answers["ingest"] as it came, in order."""
    steps: list[list] = []
    answers["ingest"] = steps

    def step(name: str, *args, **kwargs) -> dict | bytes:
        status, body = call(*args, **kwargs)
        steps.append([name, status])
        return body

    text = "docker smoke test: a purple unicorn riding a bicycle"
    step("text without the key", "POST", "/v1/items", {"text": text}, expect=(401,))
    created = step("text", "POST", "/v1/items", {"text": text, "labels": []}, key=True,
                   expect=(201,))
    (item,) = created["items"]
    assert item["created"] is True and item["modality"] == "text", item
    fetched = step("fetch it", "GET", f"/v1/items/{item['id']}")
    assert fetched["text"] == text, fetched
    again = step("the same text again", "POST", "/v1/items", {"text": text}, key=True,
                 expect=(200,))
    assert again["items"][0]["id"] == item["id"] and not again["items"][0]["created"], again
    step("delete it", "DELETE", f"/v1/items/{item['id']}", key=True, expect=(204,))
    step("fetch it again", "GET", f"/v1/items/{item['id']}", expect=(404,))
    print(f"ingested text item {item['id']} (refused without the key), fetched, "
          "re-sent (same id), deleted, gone")

    same = step("the top hit's image", "POST", "/v1/items",
                {"image_base64": base64.b64encode(image).decode()}, key=True, expect=(200,))
    assert same["items"][0]["id"] == top["id"] and not same["items"][0]["created"], same
    steps[-1].append(f"existing id {top['id']}, created false")
    print(f"re-ingested the top image: existing id {top['id']}, nothing duplicated")


if __name__ == "__main__":
    found: dict = {}
    ingest(found, *search(found))
    if os.environ.get("SMOKE_ANSWERS"):
        with open(os.environ["SMOKE_ANSWERS"], "w") as out:
            json.dump(found, out, indent=1)
