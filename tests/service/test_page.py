"""The search page driven in headless Chromium (Debian's chromium + chromedriver, Selenium):
a text search shows result images, an image upload shows texts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from tests.service.conftest import Server

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
