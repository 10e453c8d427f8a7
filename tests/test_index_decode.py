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
