"""GSD is ground metres on the WGS84 ellipsoid, whatever the CRS's units: checked against closed-form formulas."""

from __future__ import annotations

import math

import pytest
import rasterio
from index_helpers import DATA
from pyproj import Proj

from index.gsd import gsd, pixel_ground_size

A = 6_378_137.0  # WGS84 semi-major axis
E2 = 0.00669437999014  # WGS84 first eccentricity squared


def _radii(lat: float) -> tuple[float, float]:
    """(meridian radius M, radius of the parallel N cos(lat)) of the WGS84 ellipsoid at `lat` degrees."""
    s = math.sin(math.radians(lat))
    w = 1.0 - E2 * s * s
    return A * (1.0 - E2) / w**1.5, A / math.sqrt(w) * math.cos(math.radians(lat))


def _window(dataset: rasterio.DatasetReader) -> tuple[int, int, int, int]:
    return 0, 0, dataset.width, dataset.height


def test_web_mercator_cog_is_measured_on_the_ground() -> None:
    """cogeo.tif reports 0.597 m pixels in EPSG:3857 units; at its centre latitude (37.7° N) they are 0.473 m.
    By hand: EPSG:3857 puts latitude phi at y = a ln tan(pi/4 + phi/2), so one unit of y is cos(phi)/a radians
    of latitude (M metres each) and one unit of x is 1/a radians of longitude (N cos(phi) metres each)."""
    with rasterio.open(DATA / "geotiff" / "cogeo.tif") as dataset:
        transform = tuple(dataset.transform)[:6]
        centre_y = (dataset.transform @ (dataset.width / 2, dataset.height / 2))[1]
        got = gsd(dataset.crs.to_string(), transform, _window(dataset))
    lat = math.degrees(2.0 * math.atan(math.exp(centre_y / A)) - math.pi / 2.0)
    meridian, parallel = _radii(lat)
    along_x = transform[0] / A * parallel
    along_y = -transform[4] * math.cos(math.radians(lat)) / A * meridian
    assert 37.5 < lat < 37.8 and transform[0] == pytest.approx(0.5972, abs=1e-4)
    assert got == pytest.approx(math.sqrt(along_x * along_y), rel=1e-6)
    assert got == pytest.approx(0.473, abs=0.001)


def test_web_mercator_scene_is_not_reported_in_projected_units() -> None:
    with rasterio.open(DATA / "geotiff" / "rgb1_fake_nir_epsg3857.tif") as dataset:
        pixel = math.sqrt(dataset.transform.a * -dataset.transform.e)
        got = gsd(dataset.crs.to_string(), tuple(dataset.transform)[:6], _window(dataset))
    assert pixel / got == pytest.approx(1.106, abs=0.003)  # 1/cos(25.3° N): Mercator's stretch at the centre


def test_geographic_degrees_become_metres_at_the_centre_latitude() -> None:
    """0.0001° pixels at 50° N: 7.2 m east-west, 11.1 m north-south; the GSD is their geometric mean."""
    transform = (0.0001, 0.0, 10.0, 0.0, -0.0001, 50.0005)
    along_x, along_y = pixel_ground_size("EPSG:4326", transform, 5.0, 5.0)
    meridian, parallel = _radii(50.0)
    assert along_x == pytest.approx(parallel * math.radians(0.0001), rel=1e-6) == pytest.approx(7.17, abs=0.01)
    assert along_y == pytest.approx(meridian * math.radians(0.0001), rel=1e-6) == pytest.approx(11.12, abs=0.01)
    assert gsd("EPSG:4326", transform, (0, 0, 10, 10)) == pytest.approx(math.sqrt(along_x * along_y), rel=1e-9)


def test_utm_stays_the_pixel_size_within_the_scale_factor() -> None:
    """On the central meridian a UTM grid is scaled by exactly 0.9996; 300 km east of it by about 1.0007."""
    on_meridian = (10.0, 0.0, 499_000.0, 0.0, -10.0, 4_001_000.0)  # window centre at easting 500000
    assert gsd("EPSG:32633", on_meridian, (0, 0, 200, 200)) == pytest.approx(10.0 / 0.9996, rel=1e-6)
    east = (10.0, 0.0, 799_000.0, 0.0, -10.0, 4_001_000.0)
    got = gsd("EPSG:32633", east, (0, 0, 200, 200))
    lon, lat = Proj("EPSG:32633")(800_000.0, 4_000_000.0, inverse=True)
    scale = Proj("EPSG:32633").get_factors(lon, lat).meridional_scale  # conformal: the same along x and y
    assert got == pytest.approx(10.0 / scale, rel=1e-5) and 9.99 < got < 10.0


def test_no_georeferencing_or_unknown_crs_has_no_gsd() -> None:
    assert gsd(None, None, (0, 0, 10, 10)) is None
    assert gsd("EPSG:999999", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), (0, 0, 10, 10)) is None
