"""The STAC API at /stac against a real server: stac-api-validator (in-process, schemas offline), pystac-client as
a user (free-text search equals POST /v1/search/text), item validation, paging and errors."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator

import httpx
import pystac
import pytest
import requests
from api_support import DATA
from pystac_client import Client

from index.store import open_version

QUERY = "many buildings and green trees near a road"
# UTM 33N rasters of the store lie around 15°E 36°N; this box holds them and the windows of the large scene.
BBOX = [14.9, 36.0, 15.4, 36.7]
WHEN = "2018-01-01T00:00:00Z/2021-12-31T23:59:59Z"
AROUND = {"type": "Polygon", "coordinates": [[[14.9, 36.0], [15.4, 36.0], [15.4, 36.7], [14.9, 36.7], [14.9, 36.0]]]}


@pytest.fixture(scope="module", autouse=True)
def offline_schemas() -> None:
    """Validators read the extension schemas from ../shared/data/stac-schemas, never the network."""
    spec = importlib.util.spec_from_file_location("stac_offline", DATA / "stac-schemas" / "offline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install()


@pytest.fixture()
def client(stac_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stac_server.url, timeout=60) as http:
        yield http


def test_stac_api_validator_passes_core_item_search_and_features(stac_server) -> None:
    from stac_api_validator.validations import QueryConfig, validate_api

    warnings, errors = validate_api(
        root_url=f"{stac_server.url}/stac",
        ccs_to_validate=["core", "collections", "item-search", "features"],
        collection="archive",
        geometry=json.dumps(AROUND),
        auth_bearer_token=None,
        auth_query_parameter=None,
        fields_nested_property=None,
        validate_pagination=True,
        query_config=QueryConfig(*[None] * 13),
        transaction_collection=None,
        headers={},
    )
    assert not errors, errors.errors
    print("stac-api-validator warnings:", warnings.errors)


def test_landing_page_declares_free_text_and_ranked_order(client: httpx.Client) -> None:
    landing = client.get("/stac").json()
    assert "https://api.stacspec.org/v1.0.0-rc.1/item-search#free-text" in landing["conformsTo"]
    assert "ranked order" in landing["description"]
    assert client.get("/stac/conformance").json()["conformsTo"] == landing["conformsTo"]
    collections = client.get("/stac/collections").json()["collections"]
    assert [c["id"] for c in collections] == ["archive"]  # a folder archive: one collection


def test_pystac_client_free_text_search_equals_the_text_search(stac_server, client: httpx.Client) -> None:
    def free_text(request: requests.Request) -> None:
        """pystac-client 0.9 has no `q` argument for item search; a request modifier (its public hook) adds it."""
        if request.method == "POST" and request.url.endswith("/stac/search"):
            request.json = {**request.json, "q": QUERY}

    catalog = Client.open(f"{stac_server.url}/stac", request_modifier=free_text)
    found = catalog.search(bbox=BBOX, datetime=WHEN, limit=2, max_items=6, method="POST")
    stac_ids = [item.id for item in found.items()]
    assert stac_ids == expected_ids(client)  # same ids, same (ranked) order, across pages of 2
    query = {"q": QUERY, "bbox": ",".join(map(str, BBOX)), "datetime": WHEN, "limit": 6}
    assert [f["id"] for f in client.get("/stac/search", params=query).json()["features"]] == stac_ids  # GET too


def expected_ids(client: httpx.Client) -> list[str]:
    time_from, time_to = WHEN.split("/")
    body = {"query": QUERY, "k": 6, "filters": {"bbox": BBOX, "time_from": time_from, "time_to": time_to}}
    response = client.post("/v1/search/text", json=body)
    assert response.status_code == 200, response.text
    expected = [str(hit["id"]) for hit in response.json()["results"]]
    assert len(expected) >= 3  # the filters leave more than one page of limit=2
    return expected


def test_ranked_hits_carry_descending_scores(client: httpx.Client) -> None:
    features = client.get("/stac/search", params={"q": QUERY, "limit": 8}).json()["features"]
    scores = [feature["properties"]["posapl:score"] for feature in features]
    assert len(scores) == 8 and scores == sorted(scores, reverse=True)


def test_items_are_valid_stac_with_projection_and_assets(stac_server, client: httpx.Client) -> None:
    features = client.get("/stac/search", params={"limit": 100}).json()["features"]
    assert features
    for feature in features:
        item = pystac.Item.from_dict(feature)
        item.validate()
        assert set(feature["assets"]) == {"thumbnail", "data"}
        assert feature["assets"]["data"]["href"] == f"{stac_server.url}/v1/images/{feature['id']}"
        assert "proj:code" in feature["properties"]
        if feature["geometry"] is not None:
            assert feature["properties"]["proj:code"].startswith("EPSG:")
    windows = [f for f in features if f["assets"]["data"].get("type", "").startswith("image/tiff")]
    data = client.get(windows[0]["assets"]["data"]["href"])
    assert data.status_code == 200 and data.content[:2] in (b"II", b"MM")  # the tile's GeoTIFF
    one = client.get(f"/stac/collections/archive/items/{features[0]['id']}")
    assert one.status_code == 200 and one.json()["id"] == features[0]["id"]


def test_paging_returns_every_item_once(client: httpx.Client, stac_store) -> None:
    with open_version(stac_store[0]) as version:
        stored = sorted(str(i) for i in version.image_ids())
    seen: list[str] = []
    url: str | None = "/stac/collections/archive/items?limit=3"
    while url:
        page = client.get(url).json()
        seen += [feature["id"] for feature in page["features"]]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    assert sorted(seen) == stored and len(seen) == len(set(seen))
    assert seen == sorted(seen, key=int)  # without q: ascending item id
    body: dict | None = {"limit": 2, "datetime": "../2019-01-01T00:00:00Z"}  # POST pages carry their next body
    early: list[dict] = []
    while body is not None:
        page = client.post("/stac/search", json=body).json()
        early += page["features"]
        body = next((link["body"] for link in page["links"] if link["rel"] == "next"), None)
    assert len(early) == page["numberMatched"] > 2  # the JPEGs (2015) and the windows of the 2018 scene
    assert all(f["properties"]["datetime"] < "2019" for f in early)


def test_errors_are_stac_shaped_4xx(client: httpx.Client) -> None:
    for response in (
        client.get("/stac/search", params={"datetime": "yesterday"}),
        client.get("/stac/search", params={"bbox": "1,2,3"}),
        client.post("/stac/search", json={"limit": 0}),
        client.get("/stac/search", params={"sortby": "id"}),
        client.get("/stac/collections/nope"),
        client.get("/stac/collections/archive/items/123"),
    ):
        assert 400 <= response.status_code < 500, response.text
        body = response.json()
        assert body["code"] and body["description"] and body["message"] == body["description"]
        assert "/tmp" not in response.text
