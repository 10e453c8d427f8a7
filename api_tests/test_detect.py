"""POST /v1/detect against a real server and store: thresholds by score and by rank, the dissolve of touching
footprints, filters, the cap, and the GeoJSON and GeoParquet exports read back by geopandas and DuckDB.

Expected sets are computed here from the store's own vectors (exact inner products with the rocchio vector)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import geopandas
import httpx
import numpy as np
import pytest
import shapely
import shapely.geometry
from api_support import LiveServer
from detect_support import CAP, ROW, ROW_BBOX, detect_root, detect_server  # noqa: F401  (fixtures)

TIE = 1e-5


@dataclass(frozen=True)
class Store:
    ids: np.ndarray  # sorted
    vectors: np.ndarray
    names: dict[int, str]  # id -> file name
    footprints: dict[int, str | None]

    def rocchio(self, positive: int) -> np.ndarray:
        """The scores of every item for one positive (rocchio's q is that vector, unit length)."""
        vector = self.vectors[int(np.searchsorted(self.ids, positive))].astype(np.float64)
        return self.vectors.astype(np.float64) @ (vector / np.linalg.norm(vector))


@pytest.fixture(scope="module")
def store(detect_root: Path) -> Store:  # noqa: F811
    from index.store import open_version

    with open_version(detect_root) as version:
        ids = np.sort(version.image_ids())
        records = version.images(ids)
        return Store(
            ids,
            version.image_vectors(ids),
            {int(i): Path(r.path).name for i, r in zip(ids, records, strict=True)},
            {int(i): r.footprint for i, r in zip(ids, records, strict=True)},
        )


@pytest.fixture()
def client(detect_server: LiveServer) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=detect_server.url, timeout=120) as http:
        yield http


def detect(client: httpx.Client, params: dict | None = None, **body) -> httpx.Response:
    return client.post("/v1/detect", json=body, params=params or {})


def row_ids(store: Store) -> list[int]:
    return [i for i, name in store.names.items() if name in ROW]


def test_touching_tiles_dissolve_into_one_polygon(client: httpx.Client, store: Store) -> None:
    positive = row_ids(store)[0]
    response = detect(client, positive_ids=[positive], threshold={"score": -1.0}, filters={"bbox": ROW_BBOX})
    assert response.status_code == 200, response.text
    body = response.json()
    scores = store.rocchio(positive)
    row = sorted(row_ids(store))
    assert sorted(t["id"] for t in body["tiles"]) == row and body["matched"] == len(row)
    assert len(body["polygons"]) == 1
    polygon = body["polygons"][0]
    want = scores[np.searchsorted(store.ids, row)]
    assert polygon["count"] == len(row) and sorted(polygon["member_ids"]) == row
    assert polygon["max_score"] == pytest.approx(want.max(), abs=1e-4)
    assert polygon["mean_score"] == pytest.approx(want.mean(), abs=1e-4)
    union = shapely.union_all([shapely.from_geojson(store.footprints[i]) for i in row])
    assert shapely.equals(shapely.geometry.shape(polygon["geometry"]), union)


def test_apart_footprints_stay_apart_and_every_mapped_tile_is_in_one_polygon(client: httpx.Client, store: Store):
    positive = row_ids(store)[0]
    body = detect(client, positive_ids=[positive], threshold={"rank": CAP}).json()
    mapped = {t["id"] for t in body["tiles"] if t["footprint"] is not None}
    members = [i for p in body["polygons"] for i in p["member_ids"]]
    assert sorted(members) == sorted(mapped)
    in_row = [p for p in body["polygons"] if set(p["member_ids"]) & set(row_ids(store))]
    assert len(in_row) == 1 and sorted(in_row[0]["member_ids"]) == sorted(set(row_ids(store)) & mapped)
    assert len(body["polygons"]) == 1 + len(mapped - set(row_ids(store)))  # the two apart rasters: one each


@pytest.mark.parametrize("n", [1, 4, 9])
def test_threshold_by_rank_returns_exactly_the_top_n(client: httpx.Client, store: Store, n: int) -> None:
    positive = int(store.ids[3])
    body = detect(client, positive_ids=[positive], threshold={"rank": n}).json()
    scores = store.rocchio(positive)
    nth = np.sort(scores)[::-1][n - 1]
    want = set(store.ids[scores >= nth - TIE].tolist())
    got = [t["id"] for t in body["tiles"]]
    assert len(got) >= n and set(got) <= want and set(store.ids[scores >= nth + TIE].tolist()) <= set(got)
    assert body["threshold"]["rank"] == n and body["threshold"]["score"] == pytest.approx(nth, abs=1e-4)
    assert [t["score"] for t in body["tiles"]] == sorted((t["score"] for t in body["tiles"]), reverse=True)
    # the same ranking as the feedback search, which leaves the labelled item out
    similar = client.post(
        "/v1/search/feedback", json={"positive_ids": [positive], "k": n, "dedupe_overlaps": False}
    ).json()
    if n > 1:
        assert [h["id"] for h in similar["results"]][: n - 1] == got[1:n]


def test_threshold_by_score(client: httpx.Client, store: Store) -> None:
    positive = int(store.ids[5])
    scores = store.rocchio(positive)
    cut = float(np.median(scores))
    body = detect(client, positive_ids=[positive], threshold={"score": cut}).json()
    got = {t["id"] for t in body["tiles"]}
    assert set(store.ids[scores >= cut + TIE].tolist()) <= got <= set(store.ids[scores >= cut - TIE].tolist())
    assert all(t["score"] >= cut for t in body["tiles"]) and not body["capped"]


def test_filters_are_respected(client: httpx.Client, store: Store) -> None:
    positive = int(store.ids[0])
    body = detect(
        client, positive_ids=[positive], threshold={"score": -1.0}, filters={"time_from": "2020-01-01"}
    ).json()
    got = {store.names[t["id"]] for t in body["tiles"]}
    assert got == {"row_b.tif", "row_c.tif", "apart_d.tif", "apart_e.tif"} and body["matched"] == len(got)


def test_the_cap_keeps_the_best_and_says_so(client: httpx.Client, store: Store) -> None:
    positive = int(store.ids[0])
    body = detect(client, positive_ids=[positive], threshold={"score": -1.0}).json()
    scores = np.sort(store.rocchio(positive))[::-1]
    assert body["capped"] and body["count"] == CAP == len(body["tiles"]) and str(CAP) in body["note"]
    np.testing.assert_allclose([t["score"] for t in body["tiles"]], scores[:CAP], atol=1e-4)


def test_geojson_and_geoparquet_exports_read_back(client: httpx.Client, store: Store, tmp_path: Path) -> None:
    body = {"positive_ids": [row_ids(store)[0]], "threshold": {"rank": CAP}}
    polygons = detect(client, {"format": "geojson"}, **body)
    assert polygons.headers["content-type"] == "application/geo+json"
    as_json = detect(client, **body).json()
    features = polygons.json()["features"]
    assert [f["properties"]["count"] for f in features] == [p["count"] for p in as_json["polygons"]]
    tiles = client.post("/v1/detect", json=body, headers={"Accept": "application/geo+json"}, params={"layer": "tiles"})
    assert {f["properties"]["image_id"] for f in tiles.json()["features"]} == {
        str(t["id"]) for t in as_json["tiles"] if t["footprint"] is not None
    }
    parquet = detect(client, {"format": "geoparquet"}, **body)
    assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
    frame = geopandas.read_parquet(io.BytesIO(parquet.content))
    assert frame.crs.to_epsg() == 4326
    assert list(frame["count"]) == [p["count"] for p in as_json["polygons"]]
    assert [list(ids) for ids in frame["member_ids"]] == [p["member_ids"] for p in as_json["polygons"]]
    for got, feature in zip(frame.geometry, features, strict=True):
        assert got.equals(shapely.geometry.shape(feature["geometry"]))
    path = tmp_path / "tiles.parquet"
    path.write_bytes(detect(client, {"format": "geoparquet", "layer": "tiles"}, **body).content)
    rows = duckdb.sql(f"SELECT image_id, score FROM read_parquet('{path}') ORDER BY score DESC").fetchall()
    assert [r[0] for r in rows] == [t["id"] for t in as_json["tiles"] if t["footprint"] is not None]


@pytest.mark.parametrize(
    ("threshold", "extra", "words"),
    [
        ({"score": 1.5}, {}, "[-1, 1]"),
        ({"score": 1e300}, {"method": "probe"}, "less than or equal"),
        ({"rank": 0}, {}, "greater than or equal to 1"),
        ({"rank": CAP + 1}, {}, "beyond the detection cap"),
        ({}, {}, "exactly one"),
        ({"score": 0.2, "rank": 3}, {}, "exactly one"),
        ({"rank": 2.5}, {}, "integer"),
    ],
)
def test_bad_thresholds_are_refused(
    client: httpx.Client, store: Store, threshold: dict, extra: dict, words: str
) -> None:
    response = detect(client, positive_ids=[int(store.ids[0])], threshold=threshold, **extra)
    assert response.status_code == 422, response.text
    assert words in response.json()["message"]


def test_non_finite_thresholds_are_refused(client: httpx.Client, store: Store) -> None:
    for raw in ("NaN", "Infinity", "-Infinity", "1e400"):
        text = f'{{"positive_ids": [{int(store.ids[0])}], "threshold": {{"score": {raw}}}}}'
        response = client.post("/v1/detect", content=text, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (raw, response.text)
        assert "finite number" in response.json()["message"]
