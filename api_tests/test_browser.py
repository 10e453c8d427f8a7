"""The web page in headless Chromium: type a query and see a grid; upload an image and see captions; a deep
link runs its search; results export as GeoJSON; the page runs under its Content-Security-Policy."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from api_support import REPO, LiveServer
from PIL import Image

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

# Collects what must never happen on the page: CSP violations (a blocked inline script or style, say).
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""
CORNERS_JS = """(corners) => { const m = posaplMap.map, r = m.getContainer().getBoundingClientRect();
  return corners.map(c => { const p = m.latLngToContainerPoint(c); return [r.left + p.x, r.top + p.y]; }); }"""


class PageWatch:
    """Script errors, dialogs and CSP violations of one page, asserted empty at the end of a scenario."""

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))

    def assert_clean(self) -> None:
        assert self.dialogs == [] and self.errors == []
        assert self.page.evaluate("() => window.__cspViolations") == []


@contextmanager
def watched_page(url: str, height: int = 1000, timeout_ms: int = 30_000) -> Iterator:
    """A Chromium tab on `url` (downloads allowed) whose PageWatch is `tab.watch`; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": height}, accept_downloads=True)
        context.add_init_script(WATCH_CSP)
        tab = context.new_page()
        tab.set_default_timeout(timeout_ms)
        tab.watch = PageWatch(tab)
        tab.goto(url)
        try:
            yield tab
        finally:
            context.close()
            browser.close()


def start_drawing(page) -> None:
    """Press "Draw area" with the map in view, and wait until the map is in drawing mode."""
    page.locator("#map").scroll_into_view_if_needed()
    page.click("#map-draw")
    page.wait_for_selector("#map.drawing")


def drag_on_map(page, first: tuple[float, float], second: tuple[float, float]) -> None:
    """Press "Draw area" and drag from one (lat, lon) towards another, leaving the button pressed: the caller
    releases it (`page.mouse.up()`), e.g. inside `expect_response`. The corners' pixels are computed only once
    drawing has started, since pressing the button may scroll the page."""
    start_drawing(page)
    corners = page.evaluate(CORNERS_JS, [list(first), list(second)])
    page.mouse.move(*corners[0])
    page.mouse.down()
    page.mouse.move(*corners[1], steps=8)


pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def page(server: LiveServer) -> Iterator:
    with watched_page(server.url + "/") as tab:
        yield tab


def test_nothing_upload_related_shows_before_an_upload(page, server: LiveServer) -> None:
    for selector in ("#upload-result", "#upload-preview", "#captions", "#similar-title"):
        assert not page.locator(selector).is_visible(), selector
    assert page.request.get(server.url + "/favicon.ico").status == 200
    icon = page.get_attribute("link[rel=icon]", "href")
    assert page.request.get(server.url + icon).status == 200


def test_query_shows_pos_tags_and_a_grid(page) -> None:
    page.fill("#query", "Many green trees are around a white building near a river.")
    page.click("button[type=submit]")
    page.wait_for_selector("#results .result-card")
    assert page.locator("#results .result-card").count() == 20
    tags = page.locator("#pos-tags .pos-tag small").all_inner_texts()
    assert tags[:3] == ["adjective", "adjective", "noun"]
    # thumbnails load after the grid appears: wait for the first one instead of sampling it once
    page.wait_for_function(
        "() => { const img = document.querySelector('#results .result-card img');"
        " return img !== null && img.complete && img.naturalWidth > 0; }"
    )
    score = page.locator("#results .result-card .score").first
    assert score.locator("small").inner_text() == "multivariate"  # the server default re-rank names its scale
    assert "not a probability" in score.get_attribute("title")
    assert "scores: multivariate re-ranking score" in page.locator("#search-meta").inner_text()
    page.locator("#results .result-card").first.click()
    page.wait_for_selector("#lightbox:not([hidden]) #lightbox-image")
    assert "/v1/images/" in page.get_attribute("#lightbox-image", "src")
    page.keyboard.press("Escape")
    page.wait_for_selector("#lightbox", state="hidden")
    page.wait_for_function("() => document.querySelector('#index-status').textContent.startsWith('index v')")


def test_cosine_scores_are_labelled(page) -> None:
    page.select_option("#rerank", "none")
    page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelector('#search-meta').textContent.includes('cosine')")
    assert page.locator("#results .result-card .score small").first.inner_text() == "cos"
    page.select_option("#rerank", "")


def test_date_controls_send_the_time_filter(page) -> None:
    """One date range; the selector beside it names the time it filters (file time here, acquisition below)."""
    assert page.locator("#time-kind").input_value() == "acquired"
    page.select_option("#time-kind", "modified")
    page.fill("#date-from", "2100-01-01")
    with page.expect_request(lambda r: r.url.endswith("/v1/search/text") and r.method == "POST") as request:
        page.click("button[type=submit]")
    expected = page.evaluate("() => new Date('2100-01-01T00:00:00').getTime() / 1000")
    assert json.loads(request.value.post_data)["filters"] == {"min_mtime": expected}
    page.wait_for_function("() => document.querySelector('#search-meta').textContent.startsWith('0 images')")
    assert page.locator("#results .result-card").count() == 0
    page.fill("#date-from", "")
    page.fill("#date-to", "2100-01-01")
    with page.expect_request(lambda r: r.url.endswith("/v1/search/text") and r.method == "POST") as request:
        page.click("button[type=submit]")
    assert set(json.loads(request.value.post_data)["filters"]) == {"max_mtime"}
    page.wait_for_function("() => document.querySelectorAll('#results .result-card').length === 20")
    page.select_option("#time-kind", "acquired")
    with page.expect_request(lambda r: r.url.endswith("/v1/search/text") and r.method == "POST") as request:
        page.click("button[type=submit]")
    assert json.loads(request.value.post_data)["filters"] == {"time_to": "2100-01-01"}
    page.wait_for_function("() => !document.querySelector('#search-meta').textContent.startsWith('searching')")
    page.fill("#date-to", "")


def test_export_geojson_downloads_the_results(page) -> None:
    page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#results .result-card').length === 20")
    shown = page.locator("#results .result-card").evaluate_all("cards => cards.map(c => c.dataset.id)")
    with page.expect_download() as download:
        page.click("#export-geojson")
    assert download.value.suggested_filename == "posapl-results.geojson"
    collection = json.loads(Path(download.value.path()).read_text())
    assert collection["type"] == "FeatureCollection"
    assert [feature["id"] for feature in collection["features"]] == shown
    assert [feature["properties"]["rank"] for feature in collection["features"]] == list(range(1, 21))


def test_deep_link_runs_the_search(page, server: LiveServer) -> None:
    """`/?q=…` searches on load: the map and its filters must exist before that search runs."""
    tab = page.context.new_page()
    watch = PageWatch(tab)
    tab.goto(server.url + "/?q=" + "green trees near a river".replace(" ", "+"))
    tab.wait_for_function("() => document.querySelectorAll('#results .result-card').length === 20")
    assert tab.locator("#query").input_value() == "green trees near a river"
    assert not tab.locator("#search-error").is_visible()
    assert tab.locator("#map-count").inner_text() == "0 of 20 results on the map"
    watch.assert_clean()
    tab.close()


def test_security_headers_on_the_page_and_the_api(page, server: LiveServer) -> None:
    for response in (
        page.request.get(server.url + "/"),
        page.request.get(server.url + "/static/app.js"),
        page.request.post(server.url + "/v1/search/text", data={"query": "a river", "k": 1}),
        page.request.post(server.url + "/v1/search/text", data={"query": ""}),
    ):
        headers = response.headers
        policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'", response.url
        assert policy["style-src"] == "'self'" and policy["object-src"] == "'none'"
        assert policy["frame-ancestors"] == "'none'" and policy["img-src"] == "'self' data: blob:"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
    assert response.status == 422  # the headers are on error answers too


def test_api_docs_policy_allows_exactly_their_inline_script(page, server: LiveServer) -> None:
    """FastAPI's /docs page starts Swagger UI with one inline script: its hash, and no other, is allowed."""
    response = page.request.get(server.url + "/docs")
    inline = re.findall(r"<script>(.*?)</script>", response.text(), flags=re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    script_src = next(
        part for part in response.headers["content-security-policy"].split(";") if part.strip().startswith("script-src")
    )
    assert script_src.split()[1:] == ["'self'", "https://cdn.jsdelivr.net", f"'sha256-{digest}'"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_upload_shows_captions_and_similar_images(page, indexed_image: tuple[int, Path]) -> None:
    page.set_input_files("#upload-input", str(indexed_image[1]))
    page.wait_for_selector("#captions li")
    assert page.locator("#captions li").count() == 5
    assert page.locator("#captions .caption-text").first.inner_text().strip()
    page.wait_for_selector("#similar .result-card")
    assert page.locator("#similar .result-card").first.get_attribute("data-id") == str(indexed_image[0])
    ARTIFACTS.mkdir(exist_ok=True)
    # Thumbnails load lazily, and the map pushes the upload results below the fold: bring them into view first.
    page.locator("#similar .result-card").last.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#similar img, #upload-preview')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
    assert (ARTIFACTS / "web-page.png").stat().st_size > 10_000


def test_tiff_upload_shows_the_server_preview(page, indexed_image: tuple[int, Path], tmp_path: Path) -> None:
    """Chromium cannot display TIFF: the page must show the server's JPEG rendering instead of a broken image."""
    tiff = tmp_path / "upload.tif"
    Image.open(indexed_image[1]).save(tiff, format="TIFF")
    page.set_input_files("#upload-input", str(tiff))
    page.wait_for_function(
        "() => { const img = document.querySelector('#upload-preview');"
        " return img.src.startsWith('data:image/jpeg') && img.complete && img.naturalWidth > 0; }"
    )
    assert page.locator("#upload-preview").is_visible()
    page.wait_for_function("() => document.querySelector('#upload-meta').textContent.includes('upload.tif')")
    page.screenshot(path=str(ARTIFACTS / "web-page-tiff-upload.png"), full_page=True)


def test_bad_query_shows_the_api_message(page) -> None:
    page.fill("#query", "?!?")
    page.click("button[type=submit]")
    page.wait_for_selector("#search-error:not([hidden])")
    assert "empty" in page.locator("#search-error").inner_text()


def test_the_page_ran_without_script_errors_or_csp_violations(page) -> None:
    """Every step above ran under the page's CSP: no blocked inline script or style, no uncaught error."""
    page.watch.assert_clean()
