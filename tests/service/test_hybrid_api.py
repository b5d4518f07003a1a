"""Hybrid search through a real server: the modes, their explanations, weights, filters and
search by item in every mode, and user text that must stay plain words to FTS5."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.service.conftest import Server

MODES = ("hybrid", "vector", "lexical")


def search(server: Server, route: str = "text-to-image", **body: Any) -> httpx.Response:
    with server.client() as client:
        return client.post(f"/v1/search/{route}", json=body)


def test_text_search_is_hybrid_by_default_and_explains(server: Server) -> None:
    answer = search(server, text="river mountains", k=4, explain=True)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["mode"] == "hybrid"
    assert "river" in found["results"][0]["text"]
    for hit in found["results"]:
        assert set(hit["signals"]) == {"vector", "caption", "lexical"}
    assert found["results"][0]["signals"]["lexical"] > 0
    plain = search(server, text="river mountains", k=4).json()["results"]
    assert all(hit["signals"] is None for hit in plain)
    assert [h["id"] for h in plain] == [h["id"] for h in found["results"]]


def test_lexical_mode_returns_only_items_holding_a_query_word(server: Server) -> None:
    found = search(server, text="golden frame", k=20, mode="lexical", explain=True).json()
    assert found["mode"] == "lexical" and found["results"]
    assert all("golden frame" in hit["text"] for hit in found["results"])
    assert all(set(hit["signals"]) == {"lexical"} for hit in found["results"])
    scores = [hit["score"] for hit in found["results"]]
    assert scores == sorted(scores, reverse=True)


def test_vector_mode_is_the_learned_score_alone(server: Server) -> None:
    found = search(server, text="golden frame", k=5, mode="vector", explain=True).json()
    assert found["mode"] == "vector"
    assert all(hit["signals"] == {"vector": hit["score"]} for hit in found["results"])


def test_weights_change_the_order_and_bad_weights_are_refused(server: Server) -> None:
    words_only = search(server, text="organism tissue", k=4, mode="hybrid",
                        weights={"vector": 0, "caption": 0, "lexical": 1}).json()["results"]
    lexical = search(server, text="organism tissue", k=4, mode="lexical").json()["results"]
    assert [h["id"] for h in words_only] == [h["id"] for h in lexical]
    for weights in ({"colour": 1}, {"vector": -1}, {"vector": 0, "caption": 0, "lexical": 0},
                    {"lexical": "much"}):
        answer = search(server, text="x", weights=weights)
        assert answer.status_code == 422, (weights, answer.text)
        assert "weights" in answer.json()["detail"]


@pytest.mark.parametrize("mode", MODES)
def test_filters_k_and_search_by_item_in_every_mode(server: Server, mode: str) -> None:
    with server.client() as client:
        info = client.get("/v1/info").json()
    level, values = next(iter(info["label_values"].items()))
    wanted = values[0]
    found = search(server, text="a painting of a river", k=info["max_k"], mode=mode,
                   labels={level: wanted}).json()
    assert all(hit["labels"][info["levels"].index(level)] == wanted
               for hit in found["results"])
    assert search(server, text="river", k=info["max_k"] + 1, mode=mode).status_code == 422
    for route in ("text-to-image", "text-to-text"):
        assert search(server, route, text="river", mode=mode).status_code == 200
    item = next(iter(server.items.values()))["image"]
    similar = search(server, "similar", id=item, k=3, modality="image", mode=mode)
    assert similar.status_code == 200, similar.text
    assert similar.json()["mode"] == mode
    assert item not in [hit["id"] for hit in similar.json()["results"]]


NASTY = ['"', '"unbalanced', 'river" OR "x', "NEAR(river sea)", "river*", "^river",
         "text:river", "river AND", "OR", "NOT river", "-river", "(river", "river)))",
         "🌊🏔️", "!!! ??? ...", "\x00river\x01", "\x1b[31mriver", "a" * 10_000,
         "river " * 1_666, "AND OR NOT NEAR", "'; DROP TABLE words; --"]


@pytest.mark.parametrize("mode", MODES)
def test_user_text_never_reaches_fts5_syntax(server: Server, mode: str) -> None:
    for text in NASTY:
        for route in ("text-to-image", "text-to-text"):
            answer = search(server, route, text=text, k=5, mode=mode)
            assert answer.status_code == 200, (mode, route, repr(text[:40]), answer.text)
    assert search(server, text="a" * 10_001, mode=mode).status_code == 413  # over the limit
    assert search(server, text=" \x00 ", mode=mode).status_code == 422  # nothing to search
    assert search(server, text="river", k=5, mode="lexical").json()["results"]


def test_info_tells_the_modes_and_the_fusion(server: Server) -> None:
    with server.client() as client:
        info = client.get("/v1/info").json()
    assert info["search_modes"] == {"image": "hybrid", "text": "hybrid"}
    assert info["fusion"]["method"] in ("zscore", "rrf")
    assert set(info["fusion"]["weights"]) == {"vector", "caption", "lexical"}
    assert info["text_fields"] == []
