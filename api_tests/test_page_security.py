"""The page against a hostile archive: file names and captions that hold markup must show as text on every view
(grid, lightbox, map tooltip, caption list, upload details), run no script and inject no element. Also: the
security headers, the operator's tile basemap allowed by the CSP, and an area of interest that keeps a scene
covering the whole world from zooming the map out to the world."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import rasterio
from api_support import DATA, LiveServer, build_index, free_port, model_env, start_server
from PIL import Image
from rasterio.transform import from_origin
from test_browser import ARTIFACTS, CHROMIUM, drag_on_map, watched_page
from test_geo_search import is_text_search, write_raster

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]

HOSTILE_TIF = "<img src=x onerror=alert(document.domain)>.tif"  # georeferenced: it has a map footprint
BOLD_JPEG = "<b>bold.jpg"
HOSTILE_CAPTION = "<img src=x onerror=alert(1)>"
BOLD_CAPTION = "<b>bold</b> green trees near a river"
UPLOAD_NAME = "<img src=x onerror=alert(2)>.jpg"
QUERY = "many green trees near a river"
# Nothing the archive's strings could inject: an <img src=x>, a <b>, or any element with an inline handler.
INJECTED = "() => document.querySelectorAll('img[src=\"x\"], b, [onerror]').length"


def write_world_scene(path: Path, source: Path) -> None:
    """A coarse EPSG:4326 scene covering the whole world (acquired 2015)."""
    pixels = np.asarray(Image.open(source).convert("RGB").resize((64, 32))).transpose(2, 0, 1)
    profile = {
        "driver": "GTiff", "width": 64, "height": 32, "count": 3, "dtype": "uint8", "crs": "EPSG:4326",
        "transform": from_origin(-180.0, 90.0, 360 / 64, 180 / 32),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
        dst.update_tags(TIFFTAG_DATETIME="2015:05:01 10:00:00")


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path) -> tuple[Path, Path]:
    """(index root, a plain archive JPEG): hostile names and captions, a world scene, and plain RSICD images."""
    tmp = tmp_path_factory.mktemp("hostile")
    images = tmp / "images"
    images.mkdir()
    entries = json.loads((DATA / "rsicd" / "rsicd_test.json").read_text())[:5]
    sources = [DATA / "rsicd" / entry["image"] for entry in entries]
    write_raster(images / HOSTILE_TIF, sources[0], "EPSG:4326", 10.0, 50.01, 0.0001, "2021:07:01 10:00:00")
    write_world_scene(images / "world.tif", sources[1])
    shutil.copy2(sources[2], images / BOLD_JPEG)
    for source in sources[3:]:
        shutil.copy2(source, images / source.name)
    captions = tmp / "captions.txt"  # one caption a line: the whole bank is shown for an upload (k_captions=5)
    captions.write_text("\n".join([HOSTILE_CAPTION, BOLD_CAPTION, "a long bridge over a wide river"]) + "\n")
    build_index(tmp / "index", images, captions, tiny_arch_file)
    return tmp / "index", images / sources[3].name


class TileHandler(BaseHTTPRequestHandler):
    """Any tile path answers one small PNG: a stand-in for the operator's own tile server (another origin)."""

    png = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.png)))
        self.end_headers()
        self.wfile.write(self.png)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tile_server() -> Iterator[str]:
    buffer = BytesIO()
    Image.new("RGB", (256, 256), (214, 226, 204)).save(buffer, format="PNG")
    TileHandler.png = buffer.getvalue()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), TileHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def hostile_server(
    tmp_path_factory: pytest.TempPathFactory, hostile_index, tile_server: str, tiny_arch_file: Path
) -> Iterator[LiveServer]:
    env = {
        **model_env(tiny_arch_file),
        "POSAPL_INDEX_ROOT": str(hostile_index[0]),
        "POSAPL_RERANK_DEFAULT": "none",
        "POSAPL_MAP_TILES": tile_server + "/{z}/{x}/{y}.png",
    }
    live = start_server(tmp_path_factory.mktemp("hostile-server"), "hostile", env)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def page(hostile_server: LiveServer) -> Iterator:
    with watched_page(hostile_server.url + "/", height=1100, timeout_ms=60_000) as tab:
        yield tab


def assert_nothing_injected(page) -> None:
    assert page.evaluate(INJECTED) == 0
    page.watch.assert_clean()  # no dialog, no script error, no CSP violation


def test_headers_name_the_tile_origin(hostile_server: LiveServer, tile_server: str, page) -> None:
    for response in (page.request.get(hostile_server.url + "/"), page.request.get(hostile_server.url + "/v1/index")):
        policy = response.headers["content-security-policy"]
        assert f"img-src 'self' data: blob: {tile_server};" in policy
        assert "script-src 'self';" in policy and "'unsafe-inline'" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    config = page.request.get(hostile_server.url + "/page-config.json").json()
    assert config == {"map_tiles": tile_server + "/{z}/{x}/{y}.png"}


def test_the_basemap_loads_under_the_csp(page, tile_server: str) -> None:
    page.wait_for_function(
        "(origin) => [...document.querySelectorAll('#map img.leaflet-tile')].some("
        "img => img.src.startsWith(origin) && img.complete && img.naturalWidth === 256)",
        arg=tile_server,
    )
    page.watch.assert_clean()


def test_hostile_names_show_as_text_in_the_grid_and_lightbox(page) -> None:
    page.fill("#query", QUERY)
    page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#results .result-card').length === 5")
    paths = page.locator("#results .result-card .path").all_inner_texts()
    assert HOSTILE_TIF in paths and BOLD_JPEG in paths
    assert page.locator(f'#results .result-card[title="{BOLD_JPEG}"] img').get_attribute("alt") == BOLD_JPEG
    assert_nothing_injected(page)

    page.locator("#results .result-card", has_text=HOSTILE_TIF).click()
    page.wait_for_selector("#lightbox:not([hidden])")
    assert page.locator("#lightbox-caption").inner_text().startswith(HOSTILE_TIF + " · 64×64")
    assert_nothing_injected(page)
    page.keyboard.press("Escape")
    page.wait_for_selector("#lightbox", state="hidden")

    page.wait_for_function("() => document.querySelectorAll('#map path.footprint').length === 2")
    assert_nothing_injected(page)


def test_hostile_footprint_tooltip_is_text(page) -> None:
    """Hovered, the footprint's tooltip shows the name as text. Only the hostile scene is on the map (acquired
    2021; the world scene 2015), so the footprint under the mouse is certainly its own."""
    page.fill("#query", QUERY)
    page.fill("#date-from", "2020-01-01")
    page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#map path.footprint').length === 1")
    page.locator("#map").scroll_into_view_if_needed()
    page.locator("#map path.footprint").hover()
    tooltip = page.locator("#map .leaflet-tooltip")
    tooltip.wait_for()
    assert page.evaluate(INJECTED) == 0, tooltip.inner_html()
    assert tooltip.inner_text().startswith("#1 " + HOSTILE_TIF + " · score")
    assert tooltip.locator(".tip-path").inner_text() == HOSTILE_TIF
    assert_nothing_injected(page)
    page.fill("#date-from", "")


def test_an_area_of_interest_keeps_the_view_on_the_hits_inside_it(page) -> None:
    """The world scene intersects any area: the view fits the area's hits, not the world."""
    page.fill("#query", QUERY)
    page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#map path.footprint').length === 2")
    assert page.evaluate("() => posaplMap.map.getZoom()") < 4  # without an area, the world scene is in view
    page.evaluate("() => posaplMap.map.setView([50.005, 10.003], 12, {animate: false})")
    drag_on_map(page, (50.02, 9.99), (49.99, 10.02))
    with page.expect_response(is_text_search) as got:
        page.mouse.up()
    area = got.value.request.post_data_json["filters"]["bbox"]
    assert sorted(hit["path"] for hit in got.value.json()["results"]) == [HOSTILE_TIF, "world.tif"]
    page.wait_for_function("() => document.querySelector('#map-count').textContent.startsWith('2 of 2')")
    assert page.locator("#lightbox").is_hidden()  # ending the drag on a footprint does not open that item
    view = page.evaluate("() => posaplMap.map.getBounds().toBBoxString().split(',').map(Number)")
    west, south, east, north = view
    # the view holds the area (the map's wider aspect adds longitude), and nothing like the world
    assert west <= area[0] and south <= area[1] and area[2] <= east and area[3] <= north, (view, area)
    assert east - west < 0.5 and north - south < 0.5, view
    assert_nothing_injected(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_function("() => [...document.images].every(img => img.complete)")
    page.screenshot(path=str(ARTIFACTS / "hostile-names-page.png"), full_page=True)
    page.click("#map-clear")


def test_hostile_captions_and_upload_name_show_as_text(page, hostile_index, tmp_path: Path) -> None:
    upload = tmp_path / UPLOAD_NAME
    shutil.copy2(hostile_index[1], upload)
    page.set_input_files("#upload-input", str(upload))
    page.wait_for_selector("#captions .caption-text")
    captions = page.locator("#captions .caption-text").all_inner_texts()
    assert HOSTILE_CAPTION in captions and BOLD_CAPTION in captions
    page.wait_for_function("(name) => document.querySelector('#upload-meta').textContent.startsWith(name)",
                           arg=UPLOAD_NAME)
    page.wait_for_selector("#similar .result-card")
    assert BOLD_JPEG in page.locator("#similar .result-card .path").all_inner_texts()
    # each caption's score bar is sized (through the CSSOM: the CSP forbids style attributes)
    widths = page.locator("#captions .bar span").evaluate_all("spans => spans.map(s => s.style.width)")
    assert len(widths) == len(captions) and all(width.endswith("%") for width in widths)
    assert_nothing_injected(page)
    page.locator("#similar .result-card").last.scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.images].every(img => img.complete)")
    page.screenshot(path=str(ARTIFACTS / "hostile-names-upload.png"), full_page=True)


def test_a_query_with_markup_shows_as_text(page) -> None:
    page.fill("#query", "<b>green</b> trees <img src=x onerror=alert(3)> near a river")
    with page.expect_response(is_text_search):
        page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#results .result-card').length > 0")
    page.wait_for_selector("#pos-tags .pos-tag")
    assert_nothing_injected(page)
