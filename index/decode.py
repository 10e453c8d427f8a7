"""The one decode path: an archive file, an upload or one window of a scene -> 8-bit RGB plus facts.

The indexer, the upload endpoint, thumbnails and the full-size view all call `decode_image`, so an upload of an
archive file yields exactly the pixels the indexer embedded. Georeferenced rasters (GeoTIFF, COG, JPEG 2000)
are read with rasterio, window by window and from overviews, so a scene is never loaded whole; plain web
images (JPEG, PNG, GIF, WebP, BMP) are read with Pillow. Non-8-bit data is stretched to 8 bits with one
stretch per *scene* (`probe`), applied identically to every window of that scene and to an upload of the same
file, so neighbouring tiles look alike. Anything that cannot be decoded safely raises BadImageError with the
reason (never a server path) for the report or the HTTP error.

The readers live in index.decode_raster (rasterio) and index.decode_pillow (Pillow), the shared types and the
stretch in index.decode_facts; this module picks the reader by the file's magic number and is the one entry point.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image
from rasterio.errors import RasterioError

from index.decode_facts import (
    BadImageError,
    DecodedImage,
    ImageFacts,
    PixelWindow,
    Source,
    Stretch,
    check_pixels,
    facts_from_dict,
    gdal_reason,
)
from index.decode_pillow import decode_pil, open_pil
from index.decode_raster import open_raster, raster_facts, read_raster
from index.vrt import VRT_SUFFIX, is_vrt

__all__ = [
    "IMAGE_SUFFIXES",
    "BadImageError",
    "DecodedImage",
    "ImageFacts",
    "PixelWindow",
    "Source",
    "Stretch",
    "decode_image",
    "dimensions",
    "facts_from_dict",
    "is_raster",
    "probe",
]

IMAGE_SUFFIXES = frozenset(  # .vrt: archive files only (index.vrt)
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".jp2", ".j2k", ".gif", ".webp", ".bmp", VRT_SUFFIX}
)
# Magic numbers of what GDAL reads better than Pillow (georeferencing, windows, overviews, any bit depth).
RASTER_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", b"\x00\x00\x00\x0cjP  ", b"\xffO\xffQ")


def _head(source: Source) -> bytes:
    if isinstance(source, bytes):
        return source[:16]
    try:
        with open(source, "rb") as handle:
            return handle.read(16)
    except OSError as exc:
        raise BadImageError(f"cannot read: {exc.strerror or exc}") from exc


def is_raster(source: Source) -> bool:
    """True for the formats rasterio reads (TIFF, BigTIFF, JPEG 2000), by magic number, not by name; and for
    an archive path named .vrt (never for uploaded bytes, see index.vrt)."""
    return is_vrt(source) or _head(source).startswith(RASTER_MAGIC)


def _check_source(source: Source) -> None:
    if isinstance(source, bytes):
        if not source:
            raise BadImageError("zero-byte file", "empty")
        return
    try:
        size = source.stat().st_size
    except OSError as exc:
        raise BadImageError(f"cannot stat: {exc.strerror or exc}") from exc
    if size == 0:
        raise BadImageError("zero-byte file", "empty")


def probe(source: Source, bands: tuple[int, ...] | None = None, max_pixels: int | None = None) -> ImageFacts:
    """The scene's facts and its stretch, computed once: pass the result to every `decode_image` of a window of
    this scene. Reads metadata and a bounded sample only (Pillow formats are decoded, within `max_pixels`)."""
    _check_source(source)
    if is_raster(source):
        with open_raster(source) as dataset:
            try:
                return raster_facts(dataset, bands, with_stretch=True)
            except (RasterioError, OSError) as exc:
                raise BadImageError(f"unreadable raster: {gdal_reason(exc, source)}", "corrupt") from exc
    return decode_pil(source, max_pixels if max_pixels is not None else 1 << 62, None, (1, 1)).facts()


def decode_image(
    source: Source,
    max_pixels: int,
    *,
    bands: tuple[int, ...] | None = None,
    window: PixelWindow | None = None,
    out_size: tuple[int, int] | None = None,
    scene: ImageFacts | None = None,
) -> DecodedImage:
    """Decode `source` (a path or uploaded bytes) or one pixel `window` of it to 8-bit RGB.

    `out_size` (width, height) reads a decimated render (from overviews where the file has them) instead of
    native pixels, for thumbnails and whole-scene views; `max_pixels` then bounds the output, else the window.
    `scene` is the file's `probe` result, so that a stretch is computed once per scene, not once per window.
    """
    _check_source(source)
    if not is_raster(source):
        return decode_pil(source, max_pixels, window, out_size)
    with open_raster(source) as dataset:
        try:
            if window is None and out_size is None:
                check_pixels(dataset.width, dataset.height, max_pixels)
            facts = scene if scene is not None else raster_facts(dataset, bands, with_stretch=True)
            if window is not None:
                x, y, w, h = window
                if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > dataset.width or y + h > dataset.height:
                    raise BadImageError(f"window {window} is outside the {dataset.width}x{dataset.height} scene")
            image, mask = read_raster(dataset, facts, window, out_size, max_pixels)
        except (RasterioError, OSError) as exc:
            raise BadImageError(f"unreadable raster: {gdal_reason(exc, source)}", "corrupt") from exc
    valid = float(np.count_nonzero(mask)) / mask.size if mask.size else 0.0
    return DecodedImage(**facts.__dict__, image=image, window=window, valid=valid, mask=mask)


def dimensions(source: Source) -> tuple[int, int]:
    """(width, height) from the header alone, to decide between one item and tiles without decoding pixels."""
    _check_source(source)
    if is_raster(source):
        with open_raster(source) as dataset:
            return dataset.width, dataset.height
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with open_pil(source) as image:
            return image.size
