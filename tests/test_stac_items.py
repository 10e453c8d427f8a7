"""STAC Items built from store records: the STAC facts of ingested items (their scene's STAC row) appear when
there is one, items validate with stac-validator and pystac offline, and datetime parsing follows RFC 3339."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from datetime import UTC, datetime

import pystac
import pystac.validation
import pytest
from conftest import DATA
from stac_validator.validate import StacValidate

from index.export import stac_values
from index.stac_meta import StacRecord
from index.store import ImageRecord
from service.errors import ServiceError
from service.stac.items import ARCHIVE_COLLECTION, EO, PROJECTION, stac_item
from service.stac.query import parse_datetime

FOOTPRINT = json.dumps(
    {"type": "Polygon", "coordinates": [[[15.0, 36.0], [15.0, 36.1], [15.1, 36.1], [15.1, 36.0], [15.0, 36.0]]]}
)
TILE = ImageRecord(
    id=1234, source=0, path="scene.tif", sha256="ab" * 32, bytes=1, width=448, height=448, mtime=0.0, bands=3,
    dtype="uint8", preprocessing="", bbox=(500000.0, 3980000.0, 502560.0, 3982560.0), crs="EPSG:32633",
    window=(0, 192, 256, 256), window_size=256, footprint=FOOTPRINT, gsd=10.0, time="2018-03-01T09:00:00+00:00",
    time_source="metadata",
)


FACTS = StacRecord(
    scene_id=TILE.scene_id, item="S2B_33SVB_20180301", collection="sentinel-2-l2a", datetime="2018-03-01T09:00:00Z",
    cloud_cover=12.5, platform="sentinel-2b", self_href="https://stac.example.org/items/S2B_33SVB_20180301",
)


@pytest.fixture(scope="module", autouse=True)
def offline_schemas() -> None:
    spec = importlib.util.spec_from_file_location("stac_offline", DATA / "stac-schemas" / "offline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install()


def served(record: ImageRecord, facts: StacRecord | None = None, score: float | None = None) -> dict:
    """The item as a client receives it (JSON: shapely's coordinate tuples become arrays)."""
    return json.loads(json.dumps(stac_item(record, facts, score)))


def valid(item: dict) -> None:
    pystac.validation.validate_dict(item)  # links are relative outside a request, so the dict is checked
    checker = StacValidate()
    assert checker.validate_dict(item), checker.message


def test_a_folder_item_is_valid_and_in_the_archive_collection() -> None:
    item = served(TILE, score=0.5)
    valid(item)
    assert item["collection"] == ARCHIVE_COLLECTION and item["stac_extensions"] == [PROJECTION]
    assert item["properties"]["proj:code"] == "EPSG:32633" and item["properties"]["proj:shape"] == [256, 256]
    assert item["properties"]["posapl:score"] == 0.5 and item["properties"]["datetime"] == "2018-03-01T09:00:00Z"
    assert item["assets"]["data"]["type"] == "image/tiff; application=geotiff"
    assert stac_values(None) == {}


def test_an_ingested_item_keeps_its_collection_cloud_cover_platform_and_source_link() -> None:
    item = served(TILE, FACTS)
    valid(item)
    assert item["collection"] == "sentinel-2-l2a" and EO in item["stac_extensions"]
    assert item["properties"]["eo:cloud_cover"] == 12.5 and item["properties"]["platform"] == "sentinel-2b"
    assert {"rel": "derived_from", "href": FACTS.self_href, "type": "application/geo+json"} in item["links"]
    assert stac_values(FACTS) == {
        "stac_item_id": "S2B_33SVB_20180301", "stac_collection": "sentinel-2-l2a", "stac_cloud_cover": 12.5,
        "stac_platform": "sentinel-2b",
    }
    # a local catalog's item file is a path on the server: no derived_from link to it
    local = served(TILE, dataclasses.replace(FACTS, self_href="/data/catalog/items/x.json"))
    assert not [link for link in local["links"] if link["rel"] == "derived_from"]
    broken = served(TILE, dataclasses.replace(FACTS, cloud_cover=150.0))  # out of eo's range: the schema refuses it
    with pytest.raises(pystac.errors.STACValidationError):
        pystac.validation.validate_dict(broken)


def test_a_plain_image_has_no_geometry_and_a_null_projection() -> None:
    plain = dataclasses.replace(TILE, path="a.jpg", bbox=None, crs=None, window=None, footprint=None, gsd=None)
    item = served(plain)
    valid(item)
    assert item["geometry"] is None and "bbox" not in item and item["properties"]["proj:code"] is None
    assert item["assets"]["data"]["type"] == "image/jpeg"


def test_rfc3339_datetimes_and_intervals() -> None:
    utc = datetime(1985, 4, 12, 23, 20, 50, 520000, tzinfo=UTC)
    assert parse_datetime("1985-04-12t23:20:50.52z") == (utc, utc)
    assert parse_datetime("../1985-04-12T23:20:50.52Z") == (None, utc)
    assert parse_datetime("1985-04-12T23:20:50.52Z/") == (utc, None)
    assert parse_datetime("2020-07-23T00:00:00.012345678Z")[0].microsecond == 12345
    for bad in ("yesterday", "2020-07-23", "../..", "2021-01-01T00:00:00Z/2020-01-01T00:00:00Z"):
        with pytest.raises(ServiceError):
            parse_datetime(bad)
