"""The requests docker/smoke.sh and docker/compose-smoke.sh make against a running container.

Standard library only (it runs on the host, outside any venv). SMOKE_URL is the service's
127.0.0.1 base URL, SMOKE_API_KEY the key the container was started with. Exits non-zero,
with the failing request, on the first unexpected answer.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

URL = os.environ["SMOKE_URL"].rstrip("/")
KEY = os.environ["SMOKE_API_KEY"]
KEY_HEADERS = {"X-API-Key": KEY}


def call(method: str, path: str, body: dict | None = None, *, key: bool = False,
         expect: tuple[int, ...] = (200,)) -> tuple[int, dict | bytes]:
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if key:
        headers.update(KEY_HEADERS)
    request = urllib.request.Request(URL + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
            kind = response.headers.get_content_type()
    except urllib.error.HTTPError as err:
        status, raw, kind = err.code, err.read(), err.headers.get_content_type()
    payload: dict | bytes = json.loads(raw) if kind.endswith("json") else raw
    if status not in expect:
        sys.exit(f"FAIL: {method} {path} -> {status} (expected {expect}): {raw[:500]!r}")
    return status, payload


def main() -> None:
    _, hits = call("POST", "/v1/search/text-to-image", {"text": "cat", "k": 5})
    results = hits["results"]
    assert 0 < len(results) <= 5, results
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True), scores
    print(f"text-to-image 'cat': {len(results)} hits, top {results[0]['id']} "
          f"labels={results[0].get('labels')} score={scores[0]:.3f}")

    text = "smoke test: a purple unicorn riding a bicycle"
    call("POST", "/v1/items", {"text": text}, expect=(401, 403))
    status, created = call("POST", "/v1/items", {"text": text, "labels": []}, key=True,
                           expect=(200, 201))
    item_id = created["id"]
    print(f"ingested text item {item_id} ({status}); without the API key: refused")
    _, item = call("GET", f"/v1/items/{item_id}")
    assert item.get("text") == text, item
    call("DELETE", f"/v1/items/{item_id}", key=True, expect=(200, 204))
    call("GET", f"/v1/items/{item_id}", expect=(404,))
    print(f"fetched and deleted item {item_id}")


if __name__ == "__main__":
    main()
