"""Decoding untrusted image bytes in memory, and making thumbnails.

Uploads are hostile input: anything may arrive (not an image, a truncated file, a small file that
decodes to gigapixels, an animated GIF, a 16-bit multi-band TIFF). Each case becomes a `ServiceError`
with a clear status instead of an exception from deep inside Pillow.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import ServiceError

THUMBNAIL_SIZE = 256

# The pixel limit is checked explicitly against the configured maximum before decoding; Pillow's own
# warning for large images would only duplicate that check in the log.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode Pillow opens; high-bit-depth data is scaled by its 1st/99th percentiles."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        data = np.asarray(image, dtype=np.float32)
        low, high = np.percentile(data, (1, 99))
        scaled = np.clip((data - low) / max(float(high - low), 1e-6), 0, 1) * 255
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode uploaded bytes to an RGB image (first frame of animated or multi-page files)."""
    if not data:
        raise ServiceError(422, "empty_upload", "the uploaded file is empty")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ServiceError(413, "decompression_bomb", f"image has more than {max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise ServiceError(415, "not_an_image", "the uploaded file is not an image format this service reads") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ServiceError(422, "corrupt_image", f"the image could not be read: {exc}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ServiceError(422, "corrupt_image", f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ServiceError(
            413, "decompression_bomb", f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    try:
        image.seek(0)
        image.load()
        return _to_rgb(image)
    except Image.DecompressionBombError:
        raise ServiceError(413, "decompression_bomb", f"image has more than {max_pixels} pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ServiceError(422, "corrupt_image", f"the image is truncated or corrupt: {exc}") from None


def make_thumbnail(path: Path, max_pixels: int, size: int = THUMBNAIL_SIZE) -> bytes:
    """JPEG thumbnail whose longer side is `size` px, from an archive image file."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                image.draft("RGB", (size, size))
            image.seek(0)
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ServiceError(422, "unreadable_image", f"the archive image could not be read: {exc}") from None
    rgb.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()
