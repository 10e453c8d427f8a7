"""Decoding archive files: GeoTIFF bands, scaling and footprint; every kind of bad file is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from index_helpers import RSICD_TEST, rsicd_names, write_bad_files, write_geotiff

from index.decode import BadImageError, decode_image
from index.layout import content_id


def test_geotiff_16bit_multiband_is_scaled_and_georeferenced(tmp_path: Path) -> None:
    data = write_geotiff(tmp_path / "scene.tif", height=48, width=64)
    decoded = decode_image(tmp_path / "scene.tif", max_pixels=10_000)
    assert (decoded.width, decoded.height, decoded.bands, decoded.dtype) == (64, 48, 4, "uint16")
    assert decoded.image.mode == "RGB" and decoded.image.size == (64, 48)
    assert "bands 1,2,3 of 4" in decoded.preprocessing and "percentiles" in decoded.preprocessing
    assert decoded.crs == "EPSG:32633"
    assert decoded.bbox == pytest.approx((500000.0, 4000000.0 - 480.0, 500640.0, 4000000.0))
    pixels = np.asarray(decoded.image)
    low, high = np.percentile(data[:3].astype(float), (2, 98))
    assert pixels.min() == 0 and pixels.max() == 255
    brightest = np.unravel_index(np.argmax(data[0]), data[0].shape)
    assert data[0][brightest] > high and pixels[brightest][0] == 255
    assert low > 0


def test_plain_images_are_unchanged(data_dir: Path) -> None:
    decoded = decode_image(data_dir / "ucm" / "images" / "1000.tif", max_pixels=10**6)
    assert (decoded.width, decoded.height, decoded.bands, decoded.preprocessing) == (256, 256, 3, "")
    assert decoded.bbox is None and decoded.crs is None
    jpeg = decode_image(RSICD_TEST / rsicd_names(1)[0], max_pixels=10**6)
    assert jpeg.image.size == (224, 224) and jpeg.preprocessing == ""


def test_bad_files_raise_with_reason(tmp_path: Path) -> None:
    expected = write_bad_files(tmp_path)
    for name, word in expected.items():
        with pytest.raises(BadImageError) as info:
            decode_image(tmp_path / name, max_pixels=4_000_000)
        assert word in str(info.value), (name, str(info.value))


def test_pixel_limit_applies_to_tiff_before_decoding(tmp_path: Path) -> None:
    write_geotiff(tmp_path / "big.tif", height=100, width=100)
    with pytest.raises(BadImageError, match="decompression bomb"):
        decode_image(tmp_path / "big.tif", max_pixels=9_999)


def test_content_id_is_stable_non_negative_int64() -> None:
    sha = "f" * 64
    assert content_id(sha) == (1 << 63) - 1
    assert content_id("0" * 64) == 0
    assert content_id("ab" * 32) == content_id("ab" * 32) != content_id("ba" * 32)


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    from PIL import Image

    data = (np.arange(64 * 64).reshape(64, 64) * 10).astype(np.uint16)
    Image.fromarray(data).save(tmp_path / "wide.png")
    decoded = decode_image(tmp_path / "wide.png", max_pixels=10_000)
    pixels = np.asarray(decoded.image)
    assert decoded.bands == 1 and "percentiles" in decoded.preprocessing
    assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) > 200


GEOTIFF = RSICD_TEST.parents[1] / "geotiff"


def test_rasterio_facts_bands_and_time(tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    from index.decode import probe

    rgba = probe(GEOTIFF / "RGBA.uint16.tif")
    assert rgba.selected == (3, 2, 1), "colour interpretation B,G,R,alpha is read as R,G,B"
    assert rgba.reader == "rasterio" and rgba.stretch is not None and rgba.crs == "EPSG:32612"
    grey = probe(GEOTIFF / "shade.tif")
    assert grey.selected == (1,) and grey.stretch is None
    data = np.full((3, 20, 30), 7, dtype=np.uint8)
    with rasterio.open(
        tmp_path / "dated.tif", "w", driver="GTiff", width=30, height=20, count=3, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(0, 0, 1, 1),
    ) as out:
        out.write(data)
        out.update_tags(TIFFTAG_DATETIME="2022:01:17 10:43:43")
    assert probe(tmp_path / "dated.tif").time == "2022-01-17T10:43:43+00:00"
    with pytest.raises(BadImageError, match="band 5 requested but the file has 3 bands"):
        decode_image(tmp_path / "dated.tif", 10_000, bands=(5, 1, 2))


def test_windows_share_the_scene_stretch_and_uploads_decode_alike(tmp_path: Path) -> None:
    from index.decode import probe

    path = GEOTIFF / "RGBA.uint16.tif"
    scene = probe(path)
    whole = np.asarray(decode_image(path, 10**7).image)
    window = decode_image(path, 10**7, window=(100, 50, 128, 96), scene=scene)
    assert np.array_equal(np.asarray(window.image), whole[50:146, 100:228]), "a window is a crop of the whole"
    assert np.array_equal(np.asarray(decode_image(path.read_bytes(), 10**7).image), whole), "bytes decode alike"
    assert 0.0 < window.valid <= 1.0


def test_errors_name_no_server_path() -> None:
    with pytest.raises(BadImageError) as info:
        decode_image(GEOTIFF / "corrupt.tif", 10**7)
    assert str(GEOTIFF) not in str(info.value) and "corrupt.tif" in str(info.value)
    with pytest.raises(BadImageError) as info:
        decode_image((GEOTIFF / "corrupt.tif").read_bytes(), 10**7)
    assert "/vsimem/" not in str(info.value)
