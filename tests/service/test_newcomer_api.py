"""What a new user meets at the REST API, on a real server whose largest k is 5 and whose log
level is `warning`: a misspelt multipart field is refused as a misspelt JSON one is; labels are
checked against the index's levels and values, on ingest and in filters; every message about k
names the limit the server enforces, and the search page never asks for more; messages say what
is wrong in words; /docs renders in Chromium with the network blocked; the log has no progress
bars."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.service.conftest import Server, png, serving
from tests.service.test_page import (
    CHROMIUM,
    DRIVER,
    browser,  # noqa: F401  (a fixture)
    loaded_images,
)

MAX_K = 5
KNOWN = ("art", "biology", "geography")
IMAGE = png((120, 40, 200))
T2I, I2T = "/v1/search/text-to-image", "/v1/search/image-to-text"


@pytest.fixture(scope="module")
def small_k(tiny_exported: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Server]:
    with serving(*tiny_exported, tmp_path_factory.mktemp("newcomer"),
                 env={"XMR_MAX_K": str(MAX_K), "XMR_LOG_LEVEL": "warning"}) as server:
        yield server


@pytest.fixture
def client(small_k: Server) -> Iterator[httpx.Client]:
    with small_k.client(headers=small_k.auth) as client:
        before = client.get("/v1/info").json()["items"]
        yield client
        assert client.get("/v1/info").json()["items"] == before, "a refused write stored"


def refused(answer: httpx.Response, *words: str, status: int = 422) -> str:
    assert answer.status_code == status, answer.text
    detail: str = answer.json()["detail"]
    for word in words:
        assert word in detail, (word, detail)
    assert not re.search(r"<[^>]*(object at 0x|class ')", answer.text), answer.text
    return detail


def upload(**fields: str) -> dict[str, object]:
    return {"files": {"file": ("q.png", IMAGE, "image/png")}, "data": fields}


def test_a_misspelt_multipart_field_is_refused_like_a_misspelt_json_one(
        client: httpx.Client) -> None:
    refused(client.post("/v1/items", json={"text": "a cat", "lables": ["art"]}), "lables")
    refused(client.post("/v1/items", **upload(text="a cat", lables='["art"]')), "lables")
    refused(client.post(I2T, **upload(kk="3")), "kk")
    refused(client.post(I2T, json={"image_base64": base64.b64encode(IMAGE).decode(),
                                   "kk": 3}), "kk")


def test_ingested_labels_fit_the_index_levels_and_values(client: httpx.Client) -> None:
    refused(client.post("/v1/items", json={"text": "two labels", "labels": ["art", "oil"]}),
            "one value per label level", "category")
    refused(client.post("/v1/items", json={"text": "a new value", "labels": ["painting"]}),
            "'painting'", *KNOWN, "new_labels")
    refused(client.post("/v1/items", **upload(labels='["painting"]')), "'painting'", *KNOWN)
    made = client.post("/v1/items", **upload(labels='["painting"]', new_labels="true"))
    assert made.status_code == 201, made.text
    texts = client.post("/v1/items", json={"text": "an oil painting of a ship",
                                           "labels": ["painting"], "new_labels": True})
    assert texts.status_code == 201, texts.text
    known = client.get("/v1/info").json()["label_values"]["category"]
    assert known == sorted([*KNOWN, "painting"])
    found = client.post(T2I, json={"text": "ship", "k": MAX_K,
                                   "labels": {"category": "painting"}})
    assert [hit["id"] for hit in found.json()["results"]] == [made.json()["items"][0]["id"]]
    again = client.post("/v1/items", json={"text": "another painting", "labels": ["painting"]})
    assert again.status_code == 201, again.text  # a stored value is known from then on
    for answer in (made, texts, again):
        assert client.delete(answer.json()["items"][0]["url"].removesuffix("/image")
                             ).status_code == 204


def test_a_filter_on_an_unknown_label_value_names_the_known_ones(small_k: Server) -> None:
    with small_k.client() as client:
        for answer in (
            client.post(T2I, json={"text": "stars", "labels": {"category": "astronomy"}}),
            client.post(I2T, **upload(labels='{"category": "astronomy"}')),
            client.post("/v1/search/similar", json={
                "id": small_k.items["tart1"]["image"], "modality": "text",
                "labels": {"category": "astronomy"}}),
        ):
            refused(answer, "'astronomy'", *KNOWN)
        ok = client.post(T2I, json={"text": "stars", "labels": {"category": "biology"}})
        assert ok.status_code == 200


def test_every_message_about_k_names_the_limit_the_server_enforces(small_k: Server) -> None:
    with small_k.client() as client:
        assert client.get("/v1/info").json()["max_k"] == MAX_K
        for answer in (
            client.post(T2I, json={"text": "cat", "k": 100_000}),
            client.post(T2I, json={"text": "cat", "k": MAX_K + 1}),
            client.post(I2T, **upload(k=str(MAX_K + 1))),
            client.post(f"{I2T}?k={MAX_K + 1}", **upload()),
            client.post("/v1/search/similar", json={"id": 1, "modality": "text", "k": 0}),
        ):
            refused(answer, f"between 1 and {MAX_K}")
        assert len(client.post(T2I, json={"text": "cat", "k": MAX_K}).json()["results"]) \
            == MAX_K


def test_messages_say_what_is_wrong_in_words(small_k: Server) -> None:
    with small_k.client() as client:
        refused(client.post(I2T, **upload() | {"files": {"file": ("x.png", b"no image",
                                                                   "image/png")}}),
                "not a readable image")
        detail = refused(client.post(T2I, content=b'{"text": "cat", ',
                                     headers={"Content-Type": "application/json"}),
                         "not valid JSON")
        assert "body." not in detail
        as_field = (b'--XB\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc\r\n'
                    b"--XB--\r\n")
        refused(client.post(I2T, content=as_field,
                            headers={"Content-Type": "multipart/form-data; boundary=XB"}),
                "file upload")
        refused(client.post(T2I, content=b"cat", headers={"Content-Type": "text/plain"}),
                "application/json", status=415)


def test_the_page_never_asks_for_more_than_the_served_k(
        small_k: Server, browser: webdriver.Chrome) -> None:  # noqa: F811
    wait = WebDriverWait(browser, 60)
    browser.get(small_k.url + "/")
    wait.until(lambda d: d.find_element(By.ID, "k").get_attribute("value") == str(MAX_K))
    browser.find_element(By.ID, "query").send_keys("The river flows through mountains")
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    wait.until(lambda d: len(loaded_images(d)) == MAX_K)
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None


# -- /docs offline in Chromium; a quiet log -------------------------------------------------

def blocked_browser() -> webdriver.Chrome:
    """Headless Chromium that reaches loopback only: every other host resolves to nothing and
    every other request goes to a proxy that is not there."""
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver: `make system-deps`")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,900", "--proxy-server=http://127.0.0.1:9",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))
    driver.set_page_load_timeout(60)
    return driver


def test_docs_render_with_the_network_blocked(small_k: Server) -> None:
    driver = blocked_browser()
    try:
        with pytest.raises(WebDriverException):
            driver.get("http://example.org/")
        driver.get(small_k.url + "/docs")
        WebDriverWait(driver, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"))
        assert len(driver.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock")) >= 10
        title = driver.find_element(By.CSS_SELECTOR, ".swagger-ui .title").text
        assert "cross-modal retrieval" in title
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert fetched and all(url.startswith(small_k.url) for url in fetched)
    finally:
        driver.quit()


def test_warning_log_level_prints_no_progress_bars(small_k: Server) -> None:
    with small_k.client() as client:
        assert client.post("/v1/search/text-to-image", json={"text": "a river", "k": 3}
                           ).status_code == 200
    log = small_k.log_text()
    assert "it/s]" not in log and "%|" not in log and "Loading weights" not in log
