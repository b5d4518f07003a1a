"""Request parsing, the generated OpenAPI document and the use cases' rules in process, through
FastAPI's TestClient (with dependency overrides where a test wants other settings) and a real
retriever over the tiny run: what needs no server process of its own. The HTTP surface itself
is tested against a real uvicorn server (test_api, test_bad_inputs, test_newcomer_api)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service import deps
from service.app import create_app
from service.labels import check_filter, check_item_labels
from service.problems import Problem
from service.settings import Settings
from tests.service.conftest import png

UPLOAD_ROUTES = {"/v1/search/image-to-text": "ImageSearchForm",
                 "/v1/search/image-to-image": "ImageSearchForm", "/v1/items": "ItemForm"}
VOCABULARY = {"group": {"animals", "food"}, "subgroup": {"cat", "dog", "fruit"}}


@pytest.fixture(scope="module")
def loaded(tiny_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[FastAPI, TestClient]]:
    """The app with its lifespan run: the real encoder and a fresh index, one text item."""
    _, checkpoint = tiny_run
    settings = Settings(index=tmp_path_factory.mktemp("in-process") / "index",
                        checkpoint=checkpoint, device="cpu")
    app = create_app(settings)
    with TestClient(app) as client:
        made = client.post("/v1/items", json={"text": "a river in the hills",
                                              "labels": ["geography"]})
        assert made.status_code == 201, made.text
        yield app, client


def test_openapi_describes_the_json_and_the_upload_body_of_one_operation() -> None:
    document = create_app(Settings(read_only=True)).openapi()  # no model needed
    for path, form in UPLOAD_ROUTES.items():
        operation = document["paths"][path]["post"]
        content = operation["requestBody"]["content"]
        assert set(content) == {"application/json", "multipart/form-data"}, path
        assert content["multipart/form-data"]["schema"]["$ref"].endswith(form)
        assert operation["summary"], path
    fields = document["components"]["schemas"]["ImageSearchForm"]["properties"]
    assert set(fields) == {"file", "k", "labels", "where", "rerank"}
    assert fields["file"]["contentMediaType"] == "application/octet-stream"
    parameters = document["paths"]["/v1/search/image-to-text"]["post"]["parameters"]
    assert {p["name"] for p in parameters if p["in"] == "query"} == {"k", "labels", "where",
                                                                     "rerank"}
    assert "new_labels" in document["components"]["schemas"]["ItemForm"]["properties"]


def test_a_media_type_no_route_takes_is_a_415_naming_what_the_path_takes() -> None:
    client = TestClient(create_app(Settings(read_only=True)))  # refused before any model
    answer = client.post("/v1/search/image-to-image", content=b"x",
                         headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415
    assert "application/json or multipart/form-data" in answer.json()["detail"]
    answer = client.post("/v1/search/text-to-text", content=b'{"text": "x"}')
    assert answer.status_code == 415 and "no Content-Type" in answer.json()["detail"]


def test_k_is_checked_against_the_settings_the_app_serves_with(
        loaded: tuple[FastAPI, TestClient]) -> None:
    app, client = loaded
    served: Settings = app.state.settings
    app.dependency_overrides[deps._settings] = lambda: served.model_copy(update={"max_k": 3})
    try:
        for answer in (
            client.post("/v1/search/text-to-text", json={"text": "river", "k": 4}),
            client.post("/v1/search/image-to-text", data={"k": "4"},
                        files={"file": ("q.png", png((1, 2, 3)), "image/png")}),
        ):
            assert answer.status_code == 422
            assert answer.json()["detail"] == "k must be between 1 and 3, got 4"
        assert client.post("/v1/search/text-to-text",
                           json={"text": "river", "k": 3}).status_code == 200
    finally:
        app.dependency_overrides.clear()


def test_the_vocabulary_grows_with_items_that_ask_for_new_values(
        loaded: tuple[FastAPI, TestClient]) -> None:
    _, client = loaded
    refused = client.post("/v1/items", json={"text": "a comet", "labels": ["astronomy"]})
    assert refused.status_code == 422 and "geography" in refused.json()["detail"]
    made = client.post("/v1/items", json={"text": "a comet", "labels": ["astronomy"],
                                          "new_labels": True})
    assert made.status_code == 201, made.text
    assert "astronomy" in client.get("/v1/info").json()["label_values"]["category"]
    found = client.post("/v1/search/text-to-text", json={
        "text": "comet", "k": 5, "labels": {"category": "astronomy"}}).json()["results"]
    assert [hit["id"] for hit in found] == [made.json()["items"][0]["id"]]


@pytest.mark.parametrize(("labels", "new", "words"), [
    (["animals"], False, "one value per label level"),
    (["animals", "cat", "tabby"], False, "group, subgroup"),
    (["animals", "kitten"], False, "'kitten' for label level 'subgroup'"),
    (["plants", "cat"], False, "known: animals, food"),
])
def test_item_labels_give_each_level_a_known_value(labels: list[str], new: bool,
                                                   words: str) -> None:
    with pytest.raises(Problem, match=words):
        check_item_labels(labels, VOCABULARY, new)


def test_item_labels_may_be_empty_known_or_new_when_asked() -> None:
    for labels, new in (([], False), (["animals", "cat"], False), (["plants", "fern"], True)):
        check_item_labels(labels, VOCABULARY, new)
    with pytest.raises(Problem, match="no label levels"):
        check_item_labels(["x"], {}, True)


def test_a_filter_names_known_levels_and_values() -> None:
    assert check_filter({"subgroup": "dog"}, VOCABULARY) == {"subgroup": "dog"}
    assert check_filter(None, VOCABULARY) is None
    with pytest.raises(Problem, match="known values: cat, dog, fruit"):
        check_filter({"subgroup": "cow"}, VOCABULARY)
    with pytest.raises(Problem, match="levels are: group, subgroup"):
        check_filter({"colour": "red"}, VOCABULARY)
