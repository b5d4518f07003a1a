"""The search page driven in headless Chromium (Debian's chromium + chromedriver, Selenium):
a text search shows result images, an image upload shows texts; on the demo artifacts, typing
`cat` shows a cat first, in result cards wide enough to read at a 1280 px window."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from tests.service.conftest import Server, start_server

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver: `make system-deps`")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def loaded_images(driver: webdriver.Chrome) -> list[dict[str, object]]:
    script = """return [...document.querySelectorAll('#results-images figure.result img')]
        .map(img => ({src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0}))"""
    return list(driver.execute_script(script))


def test_text_search_shows_images_and_an_upload_shows_texts(server: Server,
                                                            browser: webdriver.Chrome) -> None:
    # The grid is replaced when an answer lands: an element read between find_elements and
    # .text may already be detached, which means "not yet", not failure.
    wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))
    browser.get(server.url + "/")
    wait.until(lambda d: "images and" in d.find_element(By.ID, "served").text)
    footer = browser.find_element(By.TAG_NAME, "footer").text
    assert "OpenMoji" in footer and "CC BY-SA 4.0" in footer

    browser.find_element(By.ID, "query").send_keys("The river flows through mountains")
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    wait.until(lambda d: len(loaded_images(d)) > 0 and all(i["ok"] for i in loaded_images(d)))
    images = loaded_images(browser)
    assert all(str(i["src"]).startswith("/v1/items/") for i in images)
    assert "geography" in browser.find_element(By.CSS_SELECTOR, "#results-images .meta").text
    assert "ms" in browser.find_element(By.ID, "latency").text

    Select(browser.find_element(By.ID, "filter-level")).select_by_value("category")
    Select(browser.find_element(By.ID, "filter-value")).select_by_value("biology")
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    wait.until(lambda d: all("biology" in m.text for m in
                             d.find_elements(By.CSS_SELECTOR, "#results-images .meta")))
    Select(browser.find_element(By.ID, "filter-level")).select_by_value("")

    picture = server.corpus / "images" / "art" / "iart2.jpg"
    browser.find_element(By.ID, "file-input").send_keys(str(picture))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results-texts li.result-text"))
    texts = browser.find_elements(By.CSS_SELECTOR, "#results-texts li.result-text")
    assert texts and all(t.text.strip() for t in texts)
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None


# -- the demo artifacts (`make demo-artifacts`): what a new user sees ---------------------------
ROOT = Path(__file__).resolve().parents[2]
ART = Path(os.environ.get("XMR_TEST_ARTIFACTS", ROOT / "artifacts"))
DEMO = {"index": ART / "indexes/default", "checkpoint": ART / "runs/default/checkpoint.pt",
        "corpus": ART / "data/openmoji"}
CARDS = """return [...document.querySelectorAll('#results-images figure.result')].map(card => {
    const box = card.getBoundingClientRect();
    const img = card.querySelector("img").getBoundingClientRect();
    const meta = card.querySelector('.meta'), line = parseFloat(getComputedStyle(meta).lineHeight);
    return {width: box.width, left: box.left, right: box.right, imgLeft: img.left,
            imgRight: img.right, metaLines: Math.round(meta.getBoundingClientRect().height / line)};
})"""


def named_images(corpus: Path, word: str) -> set[str]:
    """Content hashes of the corpus images (OpenMoji and their Twemoji views) whose emoji name
    has `word`; keyword rows (`HEX~n`) carry a keyword, not the name, and are skipped."""
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    return {hashlib.sha256((corpus / row["image"]).read_bytes()).hexdigest()
            for row in rows if re.search(rf"\b{word}\b", row["text"])
            and not re.search(r"~\d+$", row["id"])}


def type_and_search(browser: webdriver.Chrome, wait: WebDriverWait, text: str) -> None:
    query = browser.find_element(By.ID, "query")
    query.clear()
    query.send_keys(text)
    before = [i["src"] for i in loaded_images(browser)]  # as the wait below reads them
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    wait.until(lambda d: len(loaded_images(d)) > 0 and all(i["ok"] for i in loaded_images(d))
               and [i["src"] for i in loaded_images(d)] != before)


@pytest.mark.skipif(not all(p.exists() for p in DEMO.values()),
                    reason="demo artifacts missing (make demo-artifacts)")
def test_demo_typing_cat_or_pizza_shows_it_first_in_cards_wide_enough(
        browser: webdriver.Chrome, tmp_path: Path) -> None:
    server = start_server(DEMO["index"], DEMO["checkpoint"], tmp_path / "server.log")
    try:
        browser.set_window_size(1280, 900)
        wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))
        browser.get(server.url + "/")
        wait.until(lambda d: "images and" in d.find_element(By.ID, "served").text)
        for word in ("pizza", "cat"):  # hybrid: what an image shows and the words it carries
            type_and_search(browser, wait, word)
            first = httpx.get(server.url + str(loaded_images(browser)[0]["src"]), timeout=30)
            assert hashlib.sha256(first.content).hexdigest() in named_images(DEMO["corpus"],
                                                                              word), word
            badges = browser.find_element(By.CSS_SELECTOR, "#results-images .signals").text
            assert "words" in badges, badges  # the first hit's name holds the word typed
        cards = browser.execute_script(CARDS)
        assert len(cards) >= 6
        for card in cards:
            # "0.512 · Animals & Nature › animal-mammal" on at most three lines, not one letter a
            # line; the image inside its card
            assert card["width"] >= 150 and card["metaLines"] <= 3, card
            assert card["left"] <= card["imgLeft"] and card["imgRight"] <= card["right"], card
    finally:
        server.stop()
