"""The web page in headless Chromium: type a query and see a grid; upload an image and see captions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import REPO, LiveServer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def page(server: LiveServer) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        tab = context.new_page()
        tab.set_default_timeout(30_000)
        tab.goto(server.url + "/")
        yield tab
        context.close()
        browser.close()


def test_query_shows_pos_tags_and_a_grid(page) -> None:
    page.fill("#query", "Many green trees are around a white building near a river.")
    page.click("button[type=submit]")
    page.wait_for_selector("#results .result-card")
    assert page.locator("#results .result-card").count() == 20
    tags = page.locator("#pos-tags .pos-tag small").all_inner_texts()
    assert tags[:3] == ["adjective", "adjective", "noun"]
    assert page.locator("#results .result-card img").first.evaluate("img => img.complete && img.naturalWidth > 0")
    page.locator("#results .result-card").first.click()
    page.wait_for_selector("#lightbox:not([hidden]) #lightbox-image")
    assert "/v1/images/" in page.get_attribute("#lightbox-image", "src")
    page.keyboard.press("Escape")
    assert page.locator("#index-status").inner_text().startswith("index v")


def test_upload_shows_captions_and_similar_images(page, indexed_image: tuple[int, Path]) -> None:
    page.set_input_files("#upload-input", str(indexed_image[1]))
    page.wait_for_selector("#captions li")
    assert page.locator("#captions li").count() == 5
    assert page.locator("#captions .caption-text").first.inner_text().strip()
    page.wait_for_selector("#similar .result-card")
    assert page.locator("#similar .result-card").first.get_attribute("data-id") == str(indexed_image[0])
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_function("() => [...document.images].every(img => img.complete)")
    page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
    assert (ARTIFACTS / "web-page.png").stat().st_size > 10_000


def test_bad_query_shows_the_api_message(page) -> None:
    page.fill("#query", "?!?")
    page.click("button[type=submit]")
    page.wait_for_selector("#search-error:not([hidden])")
    assert "empty" in page.locator("#search-error").inner_text()
