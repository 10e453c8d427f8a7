"""Uploads, thumbnails and browser views, all through the indexer's decode function (index.decode).

Uploads are hostile input: anything may arrive (not an image, a truncated file, a small file that decodes to
gigapixels, an animated GIF, a 16-bit multi-band TIFF). Each case becomes a `ServiceError` with a clear status
and a message without any server path. Because the upload, the thumbnail and the view decode exactly as the
indexer did, an archive file uploaded as it is finds itself with score 1.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from index.decode import BadImageError, DecodedImage, PixelWindow, probe
from index.decode import decode_image as decode_source
from index.store import IndexVersion
from service.errors import ServiceError

THUMBNAIL_SIZE = 256
VIEW_SIZE = 2048  # longer side of the rendered view of an original browsers cannot show
STATUS = {"empty": 422, "not_an_image": 415, "bomb": 413, "bands": 422, "corrupt": 422}
WEB_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}


@dataclass(frozen=True)
class Rendered:
    data: bytes
    media_type: str


def decode_error(exc: BadImageError, what: str) -> ServiceError:
    """The HTTP error for a file that cannot be decoded: `what` is "upload" (the client's fault, by kind) or
    "archive" (always 422: the archive file is damaged)."""
    codes = {"empty": "empty_upload", "not_an_image": "not_an_image", "bomb": "decompression_bomb"}
    code = codes.get(exc.kind, "corrupt_image" if what == "upload" else "unreadable_image")
    prefix = "the uploaded file" if what == "upload" else "the archive image"
    status = STATUS.get(exc.kind, 422) if what == "upload" else 422
    return ServiceError(status, code, f"{prefix} could not be decoded: {exc}")


def decode_upload(data: bytes, max_pixels: int, bands: tuple[int, ...] | None = None) -> DecodedImage:
    """Decode uploaded bytes exactly as the indexer decodes a file (first frame or page), with the store's band
    selection; a file that lacks those bands (an RGB photo sent to a Sentinel-2 store) is read in its own colours."""
    try:
        return decode_source(data, max_pixels, bands=bands)
    except BadImageError as exc:
        if exc.kind == "bands" and bands is not None:
            return decode_upload(data, max_pixels)
        raise decode_error(exc, "upload") from None


def store_bands(version: IndexVersion) -> tuple[int, ...] | None:
    """The band selection the index was built with: uploads and renders decode with it, so an archive file
    uploaded as it is gives the vector that was embedded, and a view shows what the model saw."""
    bands = version.manifest.raw.get("decode", {}).get("bands")
    return tuple(bands) if bands else None


def fit(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) scaled down, never up, so the longer side is at most `size`."""
    scale = min(1.0, size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def render(
    path: Path,
    max_pixels: int,
    size: int,
    window: PixelWindow | None = None,
    bands: tuple[int, ...] | None = None,
) -> Rendered:
    """An archive image (or one window of a scene) as something every browser shows, at most `size` px a side.

    A whole web image (JPEG, PNG, GIF, WebP) that already fits is served as it is: re-encoding it would only
    make it larger or worse. Everything else is decoded (decimated from overviews for large scenes) and encoded
    as JPEG, or PNG for views, where detail matters more than bytes.
    """
    try:
        if window is None:
            with Image.open(path) as image:
                fmt, native = image.format, image.size
                if fmt in WEB_TYPES and max(native) <= size:
                    return Rendered(path.read_bytes(), WEB_TYPES[fmt])
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        pass  # not a Pillow format (or a damaged one): decode below reports what is wrong
    try:
        facts = probe(path, bands, max_pixels)
        width, height = (window[2], window[3]) if window is not None else (facts.width, facts.height)
        decoded = decode_source(path, max_pixels, window=window, out_size=fit(width, height, size), scene=facts)
    except BadImageError as exc:
        raise decode_error(exc, "archive") from None
    out = io.BytesIO()
    if size <= THUMBNAIL_SIZE:
        decoded.image.save(out, format="JPEG", quality=85, optimize=True)
        return Rendered(out.getvalue(), "image/jpeg")
    decoded.image.save(out, format="PNG", optimize=False)
    return Rendered(out.getvalue(), "image/png")

