"""Searching an index built from a STAC catalog: every hit names its item, and the STAC filters are exact (JSON
body and GET), selected before ranking, on a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import DATA, model_env, start_server, unit_test_module

QUERY = "a green field next to a road"
S2 = "sentinel-2-l2a"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path) -> Iterator[httpx.Client]:
    from index.job import run_update
    from index.settings import IndexSettings

    tmp = tmp_path_factory.mktemp("stac-search")
    catalog = unit_test_module("stac_helpers.py").write_catalog(tmp / "catalog")
    captions = tmp / "captions.json"
    captions.write_text(json.dumps(json.loads((DATA / "rsicd" / "rsicd_test.json").read_text())[:20]))
    root = tmp / "index"
    settings = IndexSettings(
        root=root, stac=[catalog], stac_assets=["red", "green", "blue"], captions=[captions], tile_sizes=[64],
        pretrained="random", arch=str(tiny_arch_file), preset="rsitmd", device="cpu", num_workers=0, progress=False,
    )
    run_update(root, settings, settings.store_config())
    live = start_server(tmp, "stac", {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(root)})
    with httpx.Client(base_url=live.url, timeout=60) as http:
        yield http
    live.stop()


def _hits(client: httpx.Client, **filters) -> list[dict]:
    body = {"query": QUERY, "k": 100, "dedupe_overlaps": False, "filters": filters or None}
    response = client.post("/v1/search/text", json=body)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_every_hit_names_its_stac_item(client: httpx.Client) -> None:
    hits = _hits(client)
    assert len(hits) == 27  # three items of 9 tiles each
    items = {hit["stac"]["item"]: hit["stac"] for hit in hits}
    assert set(items) == {"S2A_T33_20200513", "S2B_T33_20210701", "LC08_T33_20190801"}
    assert items["S2A_T33_20200513"] == {
        "item": "S2A_T33_20200513", "collection": S2, "datetime": "2020-05-13T10:00:00+00:00", "cloud_cover": 12.5,
        "platform": "sentinel-2a", "self_href": None,  # a local catalog's file is a server path: not shown
    }
    assert all(hit["time_source"] == "stac" and hit["time"] == hit["stac"]["datetime"] for hit in hits)
    geojson = client.post("/v1/search/text?format=geojson", json={"query": QUERY, "k": 5}).json()
    for feature in geojson["features"]:
        properties = feature["properties"]
        assert properties["stac_item"] in items and properties["stac_collection"] in (S2, "landsat-c2-l2")
        assert properties["cloud_cover"] == items[properties["stac_item"]]["cloud_cover"]


def test_stac_filters_select_exactly(client: httpx.Client) -> None:
    def items(**filters) -> set[str]:
        return {hit["stac"]["item"] for hit in _hits(client, **filters)}

    assert items(collections=[S2]) == {"S2A_T33_20200513", "S2B_T33_20210701"}
    assert len(_hits(client, collections=[S2])) == 18
    assert items(cloud_cover_max=30) == {"S2A_T33_20200513", "LC08_T33_20190801"}
    assert items(platform=["sentinel-2b"]) == {"S2B_T33_20210701"}
    assert items(collections=[S2], time_from="2021-01-01") == {"S2B_T33_20210701"}
    assert items(time_to="2019-08-01") == {"LC08_T33_20190801"}  # a date alone includes that whole day
    assert items(collections=["nope"]) == set()


def test_stac_filters_in_the_query_string(client: httpx.Client) -> None:
    params = {"q": QUERY, "k": "100", "dedupe_overlaps": "false", "collections": f"{S2},landsat-c2-l2"}
    response = client.get("/v1/search/text", params={**params, "cloud_cover_max": "12.5", "platform": "sentinel-2a"})
    assert response.status_code == 200, response.text
    assert {hit["stac"]["item"] for hit in response.json()["results"]} == {"S2A_T33_20200513"}
    bad = client.get("/v1/search/text", params={"q": QUERY, "cloud_cover_max": "101"})
    assert bad.status_code == 422 and "cloud_cover_max" in bad.json()["message"]


def test_the_stac_api_serves_ingested_items_in_their_collections(client: httpx.Client) -> None:
    """The /stac view of the same store: one collection per ingested STAC collection, and each item keeps its
    collection, cloud cover and platform from the source item."""
    listed = client.get("/stac/collections").json()
    assert {c["id"] for c in listed["collections"]} >= {S2, "landsat-c2-l2"}
    page = client.get("/stac/search", params={"collections": S2, "limit": 100}).json()
    assert len(page["features"]) == 18 and {f["collection"] for f in page["features"]} == {S2}
    by_platform = {f["properties"]["platform"]: f["properties"]["eo:cloud_cover"] for f in page["features"]}
    assert by_platform["sentinel-2a"] == 12.5
    one = page["features"][0]
    assert client.get(f"/stac/collections/{S2}/items/{one['id']}").json()["properties"] == one["properties"]
    assert client.get(f"/stac/collections/landsat-c2-l2/items/{one['id']}").status_code == 404
