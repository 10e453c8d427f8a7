"""Watches on the page, in Chromium against a real uvicorn: label results, search again, save the search as a
watch, `posapl index update --add-images`, and the watch list shows as many new matches as the API reports;
opening the watch shows exactly those items and its count drops to 0. Also: the saved-search routes work
cross-origin (CORS preflight of PATCH and DELETE with the API-key header)."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import DATA, N_IMAGES, LiveServer, model_env, start_server
from cli_support import posapl, posapl_env
from test_browser import ARTIFACTS, CHROMIUM, watched_page

from index.store import open_version
from monitor.db import open_engine
from monitor.keys import add_key
from monitor.settings import MonitorSettings

ORIGIN = "https://maps.example.org"
CARDS = "#results .result-card"
HOSTILE_NAME = 'green <img src=x onerror="window.__pwned = 1"> trees'
NONE_NEW = re.compile("^0 new$")
TONIGHT = 12  # RSICD test images added by the update, none of them among the store's first N_IMAGES


class Watched:
    def __init__(self, root: Path, server: LiveServer, key: str) -> None:
        self.root, self.server, self.key = root, server, key

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers={"X-API-Key": self.key, **headers}, timeout=120)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, index_root: Path, tiny_arch_file: Path) -> Iterator[Watched]:
    """A copy of the shared test store (copied, not rebuilt: this module adds images to it, which the other
    modules' store must not see), a server on it that allows one other origin, and an API key."""
    base = tmp_path_factory.mktemp("watch-page")
    root = base / "store"
    shutil.copytree(index_root, root, ignore=shutil.ignore_patterns("state.sqlite*", ".lock", "cache", "work"))
    engine = open_engine(MonitorSettings(root=root))
    key = add_key(engine, "page")
    engine.dispose()
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(root), "POSAPL_RELOAD_POLL_S": "0.2",
           "POSAPL_RERANK_DEFAULT": "none", "POSAPL_CORS_ORIGINS": json.dumps([ORIGIN])}
    server = start_server(base, "watch-page", env)
    try:
        yield Watched(root, server, key)
    finally:
        server.stop()


def test_saved_searches_work_cross_origin(watched: Watched) -> None:
    asked = {"Origin": ORIGIN, "Access-Control-Request-Headers": "authorization, x-api-key, content-type"}
    with watched.client(Origin=ORIGIN) as client:
        for method in ("PATCH", "DELETE"):
            preflight = client.options("/v1/searches/1", headers={**asked, "Access-Control-Request-Method": method})
            assert preflight.status_code == 200, preflight.text
            assert preflight.headers["access-control-allow-origin"] == ORIGIN
            assert method in preflight.headers["access-control-allow-methods"]
            allowed = {h.strip() for h in preflight.headers["access-control-allow-headers"].lower().split(",")}
            assert {"authorization", "x-api-key"} <= allowed
        elsewhere = {**asked, "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "DELETE"}
        assert client.options("/v1/searches/1", headers=elsewhere).status_code == 400
        created = client.post("/v1/searches", json={"name": "cors", "query": "a river", "threshold": 0.9})
        assert created.status_code == 201 and created.headers["access-control-allow-origin"] == ORIGIN
        search = created.json()["id"]
        patched = client.patch(f"/v1/searches/{search}", json={"name": "cors, renamed"})
        assert patched.status_code == 200 and patched.headers["access-control-allow-origin"] == ORIGIN
        deleted = client.delete(f"/v1/searches/{search}")
        assert deleted.status_code == 204 and deleted.headers["access-control-allow-origin"] == ORIGIN


def _card_ids(page) -> list[str]:
    return page.locator(CARDS).evaluate_all("cards => cards.map(c => c.dataset.id)")


def _add_tonight(watched: Watched, folder: Path) -> None:
    """`posapl index update --add-images` with RSICD test images the store lacks; it runs the monitor."""
    entries = json.loads((DATA / "rsicd" / "rsicd_test.json").read_text())[2 * N_IMAGES : 2 * N_IMAGES + TONIGHT]
    folder.mkdir()
    for entry in entries:
        shutil.copy2(DATA / "rsicd" / entry["image"], folder / Path(entry["image"]).name)
    args = ["index", "update", "--root", str(watched.root), "--add-images", str(folder), "--no-progress",
            "--device", "cpu", "--num-workers", "0"]
    done = posapl(args, posapl_env())
    assert done.returncode == 0, done.stderr
    assert "saved searches:" in done.stdout, done.stdout + done.stderr


def _wait_for_version(client: httpx.Client, number: int) -> None:
    deadline = time.monotonic() + 120
    while client.get("/readyz").json().get("index_version") != number:
        assert time.monotonic() < deadline, f"the server never served version {number}"
        time.sleep(0.2)


def _new_ids(root: Path, version: int) -> set[str]:
    with open_version(root, version) as new, open_version(root, version - 1) as old:
        return {str(i) for i in new.image_ids()} - {str(i) for i in old.image_ids()}


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium")
def test_label_save_update_and_see_the_new_matches(watched: Watched, tmp_path: Path) -> None:
    with watched.client() as api:
        version = api.get("/readyz").json()["index_version"]
    with watched_page(watched.server.url + "/") as page:
        # review: a query, Yes on two results, No on one, search again
        page.fill("#query", "many buildings and green trees near a road")
        page.select_option("#k", "10")
        page.select_option("#time-kind", "modified")
        page.fill("#date-from", "2000-01-01")  # a filter every item passes: it must be saved with the watch
        page.click("button[type=submit]")
        page.wait_for_selector(CARDS)
        first = _card_ids(page)
        page.locator(CARDS).nth(0).locator("button[data-label=pos]").click()
        page.locator(CARDS).nth(2).locator("button[data-label=pos]").click()
        page.locator(CARDS).nth(1).locator("button[data-label=neg]").click()
        page.click("#refine")
        page.wait_for_function("() => document.querySelector('#search-meta').textContent.includes('relevant')")
        page.fill("#detect-value", "30")

        # saving without a key: the API's 401 message, as text
        page.fill("#watch-name", HOSTILE_NAME)
        page.click("#save-watch")
        page.wait_for_selector("#watch-error:not([hidden])")
        assert "API key" in page.locator("#watch-error").inner_text()

        # with the key: it is sent in a header, kept in sessionStorage only, and the watch is saved
        page.fill("#api-key", watched.key)
        page.locator("#api-key").blur()
        page.wait_for_function("() => document.querySelector('#watch-list').textContent.includes('No watches yet')")
        assert page.evaluate("() => sessionStorage.getItem('posapl.apiKey')") == watched.key
        assert watched.key not in page.evaluate("() => JSON.stringify(localStorage)")
        saving = lambda r: r.url.endswith("/v1/searches") and r.request.method == "POST"  # noqa: E731
        with page.expect_response("**/v1/detect") as detected, page.expect_response(saving) as answer:
            page.click("#save-watch")
        assert answer.value.status == 201, answer.value.text()
        sent = json.loads(answer.value.request.post_data)
        assert answer.value.request.headers["authorization"] == f"Bearer {watched.key}"
        assert watched.key not in answer.value.request.url
        assert sent["name"] == HOSTILE_NAME and sent["query"] == "many buildings and green trees near a road"
        assert sent["positive_ids"] == [first[0], first[2]] and sent["negative_ids"] == [first[1]]
        assert sent["method"] == "rocchio" and "min_mtime" in sent["filters"]
        assert sent["threshold"] == detected.value.json()["threshold"]["score"]  # "as good as result #30"
        saved = answer.value.json()
        assert saved["last_version"] == version and saved["filters"] == sent["filters"]
        entry = page.locator(f"#watch-list li.watch[data-id='{saved['id']}']")
        entry.locator(".watch-count", has_text=NONE_NEW).wait_for()
        assert entry.locator(".watch-open").inner_text() == HOSTILE_NAME  # shown as text, never as markup
        assert "filters: min_mtime" in entry.inner_text()
        assert page.locator("#watch-list img").count() == 0 and page.evaluate("() => window.__pwned") is None

        # tonight's imagery: the monitor matches the new items; the page counts what the API reports
        _add_tonight(watched, tmp_path / "tonight")
        with watched.client() as api:
            _wait_for_version(api, version + 1)
            reported = api.get(f"/v1/searches/{saved['id']}/matches").json()
        new = _new_ids(watched.root, version + 1)
        assert len(new) == TONIGHT
        matched = [hit["image_url"].split("/")[-1] for hit in reported["items"]]
        assert 0 < len(reported["matches"]) == len(matched) < TONIGHT and set(matched) <= new
        page.click("#refresh-watches")
        entry.locator(".watch-count", has_text=re.compile(f"^{len(matched)} new$")).wait_for()

        # opening the watch shows exactly those items, and marks them seen
        with page.expect_response(f"**/v1/searches/{saved['id']}/matches?*"):
            entry.locator(".watch-open").click()
        page.wait_for_function("() => document.querySelector('#search-meta').textContent.includes('new matches')")
        assert sorted(_card_ids(page)) == sorted(matched)
        entry.locator(".watch-count", has_text=NONE_NEW).wait_for()
        assert page.evaluate("() => JSON.parse(localStorage.getItem('posapl.watchesSeen'))") == {
            str(saved["id"]): reported["matches"][-1]["found_at"]
        }
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "watches.png"), full_page=True)

        # delete it from the list
        entry.locator(".watch-delete").click()
        page.wait_for_function("() => document.querySelector('#watch-list').textContent.includes('No watches yet')")
        with watched.client() as api:
            assert api.get("/v1/searches").json()["searches"] == []
        page.watch.assert_clean()
