"""The page's labelling and detection in Chromium against the detection store: 👍/👎 and review keys, the tray,
"search again with these", "more like this", and a detection drawn on the map and exported, without script
errors or CSP violations. The tests run in order on one page, as a reviewer would."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from api_support import LiveServer
from detect_support import detect_root, detect_server  # noqa: F401  (fixtures)
from test_browser import ARTIFACTS, CHROMIUM, watched_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]
CARDS = "#results .result-card"


@pytest.fixture(scope="module")
def page(detect_server: LiveServer) -> Iterator:  # noqa: F811
    with watched_page(detect_server.url + "/") as tab:
        yield tab


def card_ids(page) -> list[str]:
    return page.locator(CARDS).evaluate_all("cards => cards.map(c => c.dataset.id)")


def test_label_with_buttons_and_keys_then_search_again(page) -> None:
    page.fill("#query", "many buildings and green trees near a road")
    page.select_option("#k", "10")
    page.click("button[type=submit]")
    page.wait_for_selector(CARDS)
    first = card_ids(page)
    page.locator(CARDS).nth(0).locator("button[data-label=pos]").click()
    page.locator(CARDS).nth(1).locator("button[data-label=neg]").click()
    # keyboard review: focus the third card, j moves to the fourth, y labels it, n the fifth after another j
    page.locator(CARDS).nth(2).focus()
    page.keyboard.press("j")
    assert page.evaluate("() => document.activeElement.dataset.id") == first[3]
    page.keyboard.press("y")
    page.keyboard.press("j")
    page.keyboard.press("n")
    page.keyboard.press("k")
    assert page.evaluate("() => document.activeElement.dataset.id") == first[3]
    assert page.locator(CARDS).nth(3).evaluate("c => getComputedStyle(c).outlineStyle") != "none"  # visible focus
    tray = page.locator("#label-tray .tray-item")
    assert tray.evaluate_all("items => items.map(i => [i.dataset.id, i.className])") == [
        [first[0], "tray-item pos"], [first[1], "tray-item neg"],
        [first[3], "tray-item pos"], [first[4], "tray-item neg"],
    ]
    assert page.locator(CARDS).nth(4).get_attribute("class").endswith("labelled-neg")
    with page.expect_response("**/v1/search/feedback") as answer:
        page.click("#refine")
    sent = json.loads(answer.value.request.post_data)
    assert sent["positive_ids"] == [first[0], first[3]] and sent["negative_ids"] == [first[1], first[4]]
    page.wait_for_function("() => document.querySelector('#search-meta').textContent.includes('relevant')")
    again = card_ids(page)
    assert again and not set(again) & {first[0], first[1], first[3], first[4]}


def test_more_like_this(page) -> None:
    target = card_ids(page)[0]
    with page.expect_response(f"**/v1/items/{target}/similar?*") as answer:
        page.locator(CARDS).nth(0).locator("button.more").click()
    assert answer.value.status == 200
    page.wait_for_function("() => document.querySelector('#search-meta').textContent.includes('most like')")
    similar = [hit["image_url"].split("/")[-1] for hit in answer.value.json()["results"]]
    assert card_ids(page) == similar and target not in similar


def test_detect_draws_polygons_and_exports(page) -> None:
    page.fill("#detect-value", "15")  # the server's cap: every archive item but two
    with page.expect_response("**/v1/detect") as answer:
        page.click("#detect")
    body = answer.value.json()
    assert json.loads(answer.value.request.post_data)["threshold"] == {"rank": 15}
    assert body["polygons"], body
    page.wait_for_function(f"() => document.querySelectorAll('path.detection').length === {len(body['polygons'])}")
    assert f"{body['count']} tiles" in page.locator("#detect-meta").inner_text()
    with page.expect_download() as download:
        page.click("#export-detect-geojson")
    exported = json.loads(download.value.path().read_text())
    assert [f["properties"]["count"] for f in exported["features"]] == [p["count"] for p in body["polygons"]]
    with page.expect_download() as download:
        page.click("#export-detect-parquet")
    assert download.value.path().read_bytes()[:4] == b"PAR1"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "labelling-detect.png"), full_page=True)
    page.watch.assert_clean()
