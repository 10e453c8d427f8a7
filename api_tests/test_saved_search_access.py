"""POSAPL_REQUIRE_KEY closes every search endpoint to callers without a key; a state database that is down
answers 503 on the saved-search endpoints while search keeps working."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import LiveServer, model_env, start_server
from test_browser import CHROMIUM, watched_page

from monitor.db import open_engine
from monitor.keys import add_key
from monitor.settings import MonitorSettings


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory, index_root: Path, tiny_arch_file: Path) -> Iterator[tuple]:
    """A server with POSAPL_REQUIRE_KEY=true over the shared test index, its state in a private SQLite file:
    (server, key, that file)."""
    base = tmp_path_factory.mktemp("closed")
    url = f"sqlite:///{base / 'state.sqlite'}"
    key = add_key(open_engine(MonitorSettings(root=index_root, state_db=url)), "carol")
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(index_root), "POSAPL_STATE_DB": url,
           "POSAPL_REQUIRE_KEY": "true"}
    server = start_server(base, "closed", env)
    try:
        yield server, key, base / "state.sqlite"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def state_down(
    tmp_path_factory: pytest.TempPathFactory, index_root: Path, tiny_arch_file: Path
) -> Iterator[LiveServer]:
    """A server whose state database (PostgreSQL on a closed port) cannot be reached."""
    base = tmp_path_factory.mktemp("state-down")
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(index_root),
           "POSAPL_STATE_DB": "postgresql://nobody@127.0.0.1:1/none"}
    server = start_server(base, "state-down", env)
    try:
        yield server
    finally:
        server.stop()


def test_require_key_closes_every_search(closed: tuple[LiveServer, str, Path]) -> None:
    server, key, _ = closed
    query = {"query": "a harbour", "k": 2}
    with httpx.Client(base_url=server.url, timeout=120) as client:
        refused = client.post("/v1/search/text", json=query)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/search/text", params={"q": "a harbour"}).status_code == 401
        assert client.post("/v1/search/feedback", json=query).status_code == 401
        assert client.post("/v1/detect", json={**query, "threshold": {"rank": 1}}).status_code == 401
        assert client.get("/stac/search", params={"q": "a harbour"}).status_code == 401
        assert client.post("/v1/search/image", files={"file": ("a.png", b"x", "image/png")}).status_code == 401
        assert client.post("/v1/search/text", json=query, headers={"X-API-Key": key + "x"}).status_code == 401
        allowed = client.post("/v1/search/text", json=query, headers={"Authorization": f"Bearer {key}"})
        assert allowed.status_code == 200 and len(allowed.json()["results"]) == 2
        assert client.get("/healthz").status_code == 200


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium")
def test_the_page_sends_its_key_when_search_is_closed(closed: tuple[LiveServer, str, Path]) -> None:
    """Without a key the page shows the 401's message; with the key typed in, search and search again work."""
    server, key, _ = closed
    with watched_page(server.url + "/") as page:
        page.fill("#query", "a harbour")
        page.click("button[type=submit]")
        page.wait_for_selector("#search-error:not([hidden])")
        assert "API key" in page.locator("#search-error").inner_text()
        page.fill("#api-key", key)
        page.locator("#api-key").blur()
        page.click("button[type=submit]")
        page.wait_for_selector("#results .result-card")
        page.locator("#results .result-card").nth(0).locator("button[data-label=pos]").click()
        with page.expect_response("**/v1/search/feedback") as answer:
            page.click("#refine")
        assert answer.value.status == 200 and answer.value.request.headers["authorization"] == f"Bearer {key}"
        assert page.locator("#search-error").is_hidden()
        page.watch.assert_clean()


@pytest.mark.parametrize(("format", "magic"), [("geojson", b"{"), ("geoparquet", b"PAR1")])
def test_require_key_closes_detection_exports(closed: tuple[LiveServer, str, Path], format: str, magic: bytes) -> None:
    """The GeoJSON and GeoParquet exports of a detection need a key like every search: 401 without, 200 with."""
    server, key, _ = closed
    body = {"query": "a harbour", "threshold": {"rank": 3}}
    params = {"format": format, "layer": "tiles"}
    with httpx.Client(base_url=server.url, timeout=120) as client:
        refused = client.post("/v1/detect", params=params, json=body)
        assert refused.status_code == 401 and "API key" in refused.json()["message"]
        assert client.post("/v1/detect", params=params, json=body, headers={"X-API-Key": "posapl_x"}).status_code == 401
        exported = client.post("/v1/detect", params=params, json=body, headers={"Authorization": f"Bearer {key}"})
        assert exported.status_code == 200 and exported.content.startswith(magic), exported.text[:300]


def test_an_unreachable_state_database_is_503_and_search_still_works(state_down: LiveServer) -> None:
    with httpx.Client(base_url=state_down.url, timeout=120) as client:
        listing = client.get("/v1/searches", headers={"X-API-Key": "posapl_any"})
        assert listing.status_code == 503 and "search still works" in listing.json()["message"]
        assert "127.0.0.1" not in listing.text and "nobody" not in listing.text
        assert client.get("/v1/feeds/sometoken.atom").status_code == 503
        found = client.post("/v1/search/text", json={"query": "a harbour", "k": 2})
        assert found.status_code == 200 and len(found.json()["results"]) == 2


def test_a_locked_state_database_is_503_and_search_still_works(closed: tuple[LiveServer, str, Path]) -> None:
    """Another process holds the SQLite file's write lock past the busy timeout: saving answers 503; reading
    keys (WAL readers are not blocked) and searching go on."""
    server, key, path = closed
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with httpx.Client(base_url=server.url, timeout=120, headers={"X-API-Key": key}) as client:
            saved = client.post("/v1/searches", json={"name": "locked", "query": "a harbour", "threshold": 0.2})
            assert saved.status_code == 503 and "search still works" in saved.json()["message"]
            found = client.post("/v1/search/text", json={"query": "a harbour", "k": 2})
            assert found.status_code == 200
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with httpx.Client(base_url=server.url, timeout=120, headers={"X-API-Key": key}) as client:
        freed = client.post("/v1/searches", json={"name": "free", "query": "a harbour", "threshold": 0.2})
        assert freed.status_code == 201
