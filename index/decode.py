"""Decode one archive file into 8-bit RGB plus the facts the metadata table records.

Archives hold more than web images: 16-bit and multi-band GeoTIFFs are reduced to their first three bands
and scaled to 8-bit by per-image percentiles (recorded in `preprocessing`), and the GeoTIFF footprint and
CRS are kept. Anything that cannot be decoded safely raises BadImageError with the reason for the report.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
PERCENTILES = (2.0, 98.0)
WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})  # Pillow would clip these, not scale them


class BadImageError(ValueError):
    """A file that must not enter the index; the message is the reason written to the report."""


@dataclass(frozen=True)
class ImageFacts:
    """What decoding learned about a file; becomes its metadata row."""

    width: int
    height: int
    bands: int
    dtype: str
    preprocessing: str
    bbox: tuple[float, float, float, float] | None
    crs: int | None


@dataclass(frozen=True)
class DecodedImage(ImageFacts):
    image: Image.Image = field(kw_only=True)  # 8-bit RGB

    def facts(self) -> ImageFacts:
        return ImageFacts(**{f.name: getattr(self, f.name) for f in fields(ImageFacts)})


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise BadImageError(f"empty image ({width}x{height})")
    if width * height > max_pixels:
        raise BadImageError(f"decompression bomb: {width}x{height} = {width * height} pixels > limit {max_pixels}")


def _to_uint8(bands: np.ndarray) -> tuple[np.ndarray, str]:
    """Any numeric array to uint8 by per-image percentiles; 8-bit data passes unchanged."""
    if bands.dtype == np.uint8:
        return bands, ""
    data = bands.astype(np.float64)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise BadImageError("no finite pixel values")
    low, high = np.percentile(finite, PERCENTILES)
    if high <= low:
        high = low + 1.0
    scaled = np.clip((np.nan_to_num(data, nan=low) - low) / (high - low), 0.0, 1.0)
    note = (
        f"{bands.dtype} scaled to 8-bit by per-image percentiles p{PERCENTILES[0]:g}={low:.6g} "
        f"p{PERCENTILES[1]:g}={high:.6g}"
    )
    return (scaled * 255.0 + 0.5).astype(np.uint8), note


BBox = tuple[float, float, float, float]


def _geo(tif: tifffile.TiffFile, width: int, height: int) -> tuple[BBox | None, int | None]:
    """Footprint from tie point + pixel scale (or the affine ModelTransformation) and the EPSG code."""
    meta = tif.geotiff_metadata
    if not meta:
        return None, None
    crs = None
    for key in ("ProjectedCSTypeGeoKey", "GeographicTypeGeoKey"):
        value = meta.get(key)
        if value is not None and 1024 <= int(value) < 32767:
            crs = int(value)
            break
    bbox = None
    tie, scale = meta.get("ModelTiepoint"), meta.get("ModelPixelScale")
    transform = meta.get("ModelTransformation")
    if tie is not None and scale is not None and len(tie) >= 6 and len(scale) >= 2:
        i, j, x, y = float(tie[0]), float(tie[1]), float(tie[3]), float(tie[4])
        sx, sy = float(scale[0]), float(scale[1])
        min_x, max_y = x - i * sx, y + j * sy
        bbox = (min_x, max_y - height * sy, min_x + width * sx, max_y)
    elif transform is not None:
        m = np.asarray(transform, dtype=np.float64).reshape(4, 4)
        corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
        xs = m[0, 0] * corners[:, 0] + m[0, 1] * corners[:, 1] + m[0, 3]
        ys = m[1, 0] * corners[:, 0] + m[1, 1] * corners[:, 1] + m[1, 3]
        bbox = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    return bbox, crs


def _decode_tiff(path: Path, max_pixels: int) -> DecodedImage:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = series.axes, series.shape
            if "Y" not in axes or "X" not in axes:
                raise BadImageError(f"TIFF has no image plane (axes {axes})")
            height, width = shape[axes.index("Y")], shape[axes.index("X")]
            _check_pixels(width, height, max_pixels)
            data = series.asarray()
            bbox, crs = _geo(tif, width, height)
    except BadImageError:
        raise
    except Exception as exc:  # tifffile raises many types on corrupt files; all mean "unreadable"
        raise BadImageError(f"unreadable TIFF: {type(exc).__name__}: {exc}") from exc
    # Every axis other than Y and X (samples, planes, pages) counts as a band, in file order.
    data = np.moveaxis(data, [axes.index("Y"), axes.index("X")], [0, 1]).reshape(height, width, -1)
    bands = data.shape[2]
    notes = []
    if bands >= 3:
        rgb = data[:, :, :3]
        if bands > 3:
            notes.append(f"bands 1-3 of {bands}")
    else:
        rgb = np.repeat(data[:, :, :1], 3, axis=2)
        notes.append(f"band 1 of {bands} as grey")
    rgb, scaling = _to_uint8(rgb)
    if scaling:
        notes.append(scaling)
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    return DecodedImage(width, height, bands, str(data.dtype), "; ".join(notes), bbox, crs, image=image)


def _decode_pil(path: Path, max_pixels: int) -> DecodedImage:
    try:
        with warnings.catch_warnings():
            # The pixel limit is ours (checked before load); Pillow's own warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                _check_pixels(width, height, max_pixels)
                image.load()
                bands = len(image.getbands())
                mode = image.mode
                if mode in WIDE_MODES:
                    grey, note = _to_uint8(np.asarray(image))
                    note = f"single band as grey; {note}" if note else "single band as grey"
                    return DecodedImage(
                        width, height, bands, mode, note, None, None, image=Image.fromarray(grey).convert("RGB")
                    )
                rgb = image.convert("RGB")
    except BadImageError:
        raise
    except UnidentifiedImageError as exc:
        raise BadImageError("not an image (unrecognised format)") from exc
    except Image.DecompressionBombError as exc:
        raise BadImageError(f"decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"undecodable image: {exc}") from exc
    note = "" if mode in ("RGB", "L", "P", "RGBA") else f"mode {mode} converted to RGB"
    return DecodedImage(width, height, bands, mode, note, None, None, image=rgb)


def decode_image(path: Path, max_pixels: int) -> DecodedImage:
    """Decode `path` or raise BadImageError; never lets a hostile file allocate more than max_pixels."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadImageError(f"cannot stat: {exc}") from exc
    if size == 0:
        raise BadImageError("zero-byte file")
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _decode_tiff(path, max_pixels)
    return _decode_pil(path, max_pixels)
