"""The service end to end over HTTP against a real uvicorn process (see conftest)."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import subprocess
import sys

import httpx
import pytest
from PIL import Image
from pydantic import ValidationError

from service.settings import Settings
from tests.service.conftest import ROOT, Server, corpus_rows, png

PROBLEM = "application/problem+json"


def corpus_image(server: Server, category: str, n: int = 1) -> bytes:
    return (server.corpus / "images" / category / f"i{category}{n}.jpg").read_bytes()


def test_health_ready_and_info(server: Server) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 200
        info = client.get("/v1/info").json()
    assert info["levels"] == ["category"]
    assert info["label_values"]["category"] == ["art", "biology", "geography"]
    assert info["items"]["image"] >= 12 and info["items"]["text"] >= 12
    assert info["method"] == "linear" and info["can_rerank"] is False
    assert info["api_key_required"] is True


def test_text_to_image_finds_the_right_category_and_serves_the_images(server: Server) -> None:
    with server.client() as client:
        answer = client.post("/v1/search/text-to-image",
                             json={"text": "The river flows through mountains to the sea", "k": 4})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        hits = body["results"]
        assert len(hits) == 4 and body["modality"] == "image" and body["took_ms"] > 0
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        assert hits[0]["labels"] == ["geography"]
        image = client.get(hits[0]["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).size == (64, 48)


def test_image_to_text_by_upload_and_by_base64_agree(server: Server) -> None:
    data = corpus_image(server, "biology", 2)
    with server.client() as client:
        upload = client.post("/v1/search/image-to-text", files={"file": ("q.jpg", data,
                                                                         "image/jpeg")},
                             data={"k": "3"})
        as_json = client.post("/v1/search/image-to-text",
                              json={"image_base64": base64.b64encode(data).decode(), "k": 3})
        as_query = client.post("/v1/search/image-to-text?k=3",
                               files={"file": ("q.jpg", data, "image/jpeg")})
    assert upload.status_code == as_json.status_code == as_query.status_code == 200, upload.text
    ids = [hit["id"] for hit in upload.json()["results"]]
    assert len(ids) == 3
    assert ids == [hit["id"] for hit in as_json.json()["results"]]
    assert ids == [hit["id"] for hit in as_query.json()["results"]]
    top = upload.json()["results"][0]
    assert top["modality"] == "text" and top["text"] and top["labels"] == ["biology"]


def test_same_modality_search_returns_the_item_itself_first(server: Server) -> None:
    row = corpus_rows(server.corpus)[5]
    ids = server.items[str(row["id"])]
    with server.client() as client:
        texts = client.post("/v1/search/text-to-text", json={"text": row["text"], "k": 2}).json()
        images = client.post("/v1/search/image-to-image", files={
            "file": ("q.jpg", (server.corpus / str(row["image"])).read_bytes(), "image/jpeg")}
        ).json()
    assert texts["results"][0]["id"] == ids["text"]
    assert texts["results"][0]["score"] > 0.99
    assert images["results"][0]["id"] == ids["image"]


def test_label_filter_keeps_only_matching_items(server: Server) -> None:
    with server.client() as client:
        body = client.post("/v1/search/text-to-image", json={
            "text": "A painting of a portrait", "k": 50, "labels": {"category": "biology"}}
        ).json()
    assert body["results"] and all(h["labels"] == ["biology"] for h in body["results"])


def test_rerank_is_refused_for_a_checkpoint_without_a_scorer(server: Server) -> None:
    with server.client() as client:
        answer = client.post("/v1/search/text-to-image",
                             json={"text": "cells", "k": 3, "rerank": True})
    assert answer.status_code == 400
    assert answer.headers["content-type"] == PROBLEM
    assert "aaml" in answer.json()["detail"]


def test_ingest_pair_image_alone_text_alone_duplicates_fetch_and_delete(server: Server) -> None:
    image = png((250, 120, 10))
    with server.client() as client:
        pair = client.post("/v1/items", headers=server.auth,
                           files={"file": ("o.png", image, "image/png")},
                           data={"text": "an orange square for the ingest test",
                                 "labels": '["art"]'})
        assert pair.status_code == 201, pair.text
        image_item, text_item = pair.json()["items"]
        assert image_item["created"] and text_item["created"]
        again = client.post("/v1/items", headers=server.auth,
                            json={"image_base64": base64.b64encode(image).decode()})
        assert again.status_code == 200
        assert again.json()["items"] == [{**image_item, "created": False, "status": 200}]
        text_only = client.post("/v1/items", headers=server.auth,
                                json={"text": "a text alone, no picture", "labels": []})
        assert text_only.status_code == 201
        fetched = client.get(f"/v1/items/{text_item['id']}").json()
        assert fetched["text"] == "an orange square for the ingest test"
        assert fetched["labels"] == ["art"] and fetched["modality"] == "text"
        stored = client.get(image_item["url"])
        assert stored.status_code == 200 and stored.content == image
        media = list((server.index / "media").rglob("*.png"))
        assert len(media) == 1

        found = client.post("/v1/search/image-to-image", files={
            "file": ("o.png", image, "image/png")}).json()["results"]
        assert found[0]["id"] == image_item["id"]
        assert client.delete(f"/v1/items/{image_item['id']}",
                             headers=server.auth).status_code == 204
        assert client.get(f"/v1/items/{image_item['id']}").status_code == 404
        assert client.get(image_item["url"]).status_code == 404
        found = client.post("/v1/search/image-to-image", files={
            "file": ("o.png", image, "image/png")}, data={"k": "100"}).json()["results"]
        assert image_item["id"] not in {hit["id"] for hit in found}
        assert not list((server.index / "media").rglob("*.png")), "uploaded bytes left behind"
        assert client.delete(f"/v1/items/{image_item['id']}",
                             headers=server.auth).status_code == 404
        for item in (text_item, text_only.json()["items"][0]):
            assert client.delete(f"/v1/items/{item['id']}", headers=server.auth).status_code \
                == 204


def test_writes_need_the_api_key_and_leave_the_index_alone(server: Server) -> None:
    with server.client() as client:
        before = client.get("/v1/info").json()["items"]
        missing = client.post("/v1/items", json={"text": "no key"})
        wrong = client.post("/v1/items", json={"text": "bad key"},
                            headers={"Authorization": "Bearer nope"})
        delete = client.delete(f"/v1/items/{server.items['tart1']['text']}")
        after = client.get("/v1/info").json()["items"]
    for answer in (missing, wrong, delete):
        assert answer.status_code == 401
        assert answer.headers["content-type"] == PROBLEM
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert before == after


def test_request_id_is_echoed_and_in_the_log(server: Server) -> None:
    with server.client() as client:
        answer = client.get("/v1/items/987654321", headers={"X-Request-ID": "trace-abc-123"})
    assert answer.status_code == 404
    assert answer.headers["x-request-id"] == "trace-abc-123"
    assert answer.json()["request_id"] == "trace-abc-123"
    lines = [line for line in server.log_text().splitlines() if "trace-abc-123" in line]
    assert lines and all("[trace-abc-123]" in line for line in lines)


def test_concurrent_queries_share_encoder_calls_and_metrics_show_it(server: Server) -> None:
    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            answers = await asyncio.gather(*(
                client.post("/v1/search/text-to-image", json={"text": f"query {i}", "k": 3})
                for i in range(24)))
        return [answer.status_code for answer in answers]

    def batches(text: str) -> tuple[float, float]:
        count = float(re.search(r'xmr_encoder_batch_size_count\{kind="text"\} (\S+)', text)[1])
        total = float(re.search(r'xmr_encoder_batch_size_sum\{kind="text"\} (\S+)', text)[1])
        return count, total

    with server.client() as client:
        calls0, queries0 = batches(client.get("/metrics").text)
        assert asyncio.run(burst()) == [200] * 24
        metrics = client.get("/metrics").text
    calls, queries = batches(metrics)
    assert queries - queries0 == 24
    assert calls - calls0 < 24, "no two concurrent queries shared an encoder call"
    assert 'handler="/v1/search/text-to-image"' in metrics
    assert "http_request_duration_seconds_bucket" in metrics
    assert re.search(r'xmr_index_items\{modality="image"\} \d+', metrics)


def test_bodies_refused_before_the_app_are_counted_under_their_route(server: Server) -> None:
    with server.client() as client:
        answer = client.post("/v1/search/image-to-image", content=b"x" * (3 << 20),
                             headers={"Content-Type": "image/png"})
        metrics = client.get("/metrics").text
    assert answer.status_code == 413
    assert re.search(r'http_requests_total\{handler="/v1/search/image-to-image",method="POST",'
                     r'status="413"\} [1-9]', metrics)
    assert 'handler="/metrics"' not in metrics  # scrapes are not traffic


def test_refuses_to_start_writable_on_a_public_address_without_a_key() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "xmr", "serve", "--host", "0.0.0.0",
                           "--port", "9"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "XMR_API_KEY" in done.stderr and "0.0.0.0" in done.stderr
    # Read-only, or with a key, a public address is allowed (checked without loading models).
    assert Settings(host="0.0.0.0", read_only=True).host == "0.0.0.0"
    assert Settings(host="0.0.0.0", api_key="k").writable
    for blank in ("", "  "):  # an empty XMR_API_KEY is no key, not a key anyone can send
        assert Settings(api_key=blank).api_key is None
        with pytest.raises(ValidationError, match="XMR_API_KEY"):
            Settings(host="0.0.0.0", api_key=blank)
    assert Settings(host="::1").writable and Settings(host="localhost").writable


def test_settings_are_validated_once_at_the_edge(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from xmr.cli import main

    monkeypatch.setenv("XMR_DEVICE", "cuda:1")
    monkeypatch.setenv("XMR_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("XMR_VECTOR_BACKEND", "Milvus")
    monkeypatch.setenv("XMR_ENCODER_RUNTIME", "torch")
    made = Settings()
    assert (made.device, made.log_level, made.vector_backend) == ("cuda:1", "warning", "milvus")
    assert made.encoder_runtime == "torch"
    assert made.encoder_worker_count == 1  # one worker drives a GPU
    for bad in ({"device": "gpu"}, {"log_level": "loud"}, {"vector_backend": "annoy"},
                {"encoder_runtime": "tensorrt"}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            Settings(**bad)  # type: ignore[arg-type]
    # `xmr serve --device` takes the same words and refuses others before loading anything
    assert main(["serve", "--device", "gpu", "--port", "9"]) == 2
    assert "device" in capsys.readouterr().err


def test_auto_device_resolves_once_where_the_app_is_made() -> None:
    import torch

    from service.app import create_app

    app = create_app(Settings(device="auto", read_only=True))
    assert app.state.settings.device == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            create_app(Settings(device="cuda", read_only=True))
