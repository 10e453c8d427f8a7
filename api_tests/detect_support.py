"""The store and server of the detection tests (API and page): RSICD JPEGs without georeferencing, and
rasters of which three touch edge to edge (one dissolved area) and two stand apart. Session-scoped, so the API
and browser modules build it once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import LiveServer, model_env, start_server
from test_geo_search import PLAIN, build_geo_archive

# name: (CRS, top-left x, top-left y, pixel size, acquisition time); 64 px rasters: 640 m wide at 10 m
RASTERS = {
    "row_a.tif": ("EPSG:32633", 500000.0, 4000000.0, 10.0, "2019:05:01 10:00:00"),
    "row_b.tif": ("EPSG:32633", 500640.0, 4000000.0, 10.0, "2020:05:01 10:00:00"),
    "row_c.tif": ("EPSG:32633", 501280.0, 4000000.0, 10.0, "2021:05:01 10:00:00"),
    "apart_d.tif": ("EPSG:4326", 10.0, 50.01, 0.0001, "2021:07:01 10:00:00"),
    "apart_e.tif": ("EPSG:4326", 10.02, 50.01, 0.0001, "2022:07:01 10:00:00"),
}
ROW = ("row_a.tif", "row_b.tif", "row_c.tif")
ROW_BBOX = [14.99, 36.1, 15.03, 36.2]  # around the three touching UTM 33N rasters (about 15.0 E, 36.1 N)
CAP = PLAIN + len(RASTERS) - 2  # the server's detection cap: a threshold that keeps everything is capped


@pytest.fixture(scope="session")
def detect_root(tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path) -> Path:
    return build_geo_archive(tmp_path_factory.mktemp("detect"), RASTERS, tiny_arch_file)[0]


@pytest.fixture(scope="session")
def detect_server(
    tmp_path_factory: pytest.TempPathFactory, detect_root: Path, tiny_arch_file: Path
) -> Iterator[LiveServer]:
    env = {
        **model_env(tiny_arch_file),
        "POSAPL_INDEX_ROOT": str(detect_root),
        "POSAPL_RERANK_DEFAULT": "none",
        "POSAPL_DETECT_MAX_ITEMS": str(CAP),
    }
    live = start_server(tmp_path_factory.mktemp("detect-server"), "detect", env)
    yield live
    live.stop()
