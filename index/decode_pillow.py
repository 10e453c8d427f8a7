"""Plain web images (JPEG, PNG, GIF, WebP, BMP) for index.decode: read with Pillow, within the pixel limit."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from index.acquired import exif_time
from index.decode_facts import (
    BadImageError,
    DecodedImage,
    ImageFacts,
    PixelWindow,
    Source,
    apply_stretch,
    check_pixels,
    clean_message,
    preprocessing_note,
    stretch_of,
)

WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})  # Pillow would clip these, not scale them


def _pillow_bomb(exc: Image.DecompressionBombError, max_pixels: int | None) -> BadImageError:
    """Pillow refuses twice its own MAX_IMAGE_PIXELS before our check can run: quote the configured limit, which
    is the one the operator set and can change (Pillow's number is neither)."""
    if max_pixels is None:
        return BadImageError(f"decompression bomb: {exc}", "bomb")
    return BadImageError(f"decompression bomb: the image has more pixels than the limit of {max_pixels}", "bomb")


def open_pil(source: Source, max_pixels: int | None = None) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UnidentifiedImageError as exc:
        raise BadImageError("not an image (unrecognised format)", "not_an_image") from exc
    except Image.DecompressionBombError as exc:
        raise _pillow_bomb(exc, max_pixels) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"undecodable image: {clean_message(str(exc), source)}", "corrupt") from exc
    return image


def decode_pil(
    source: Source, max_pixels: int, window: PixelWindow | None, out_size: tuple[int, int] | None
) -> DecodedImage:
    try:
        with warnings.catch_warnings():
            # The pixel limit is ours (checked before load); Pillow's own warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_pil(source, max_pixels) as image:
                width, height = image.size
                check_pixels(width, height, max_pixels)
                image.seek(0)
                image.load()
                bands, mode, web = len(image.getbands()), image.mode, image.format in ("JPEG", "PNG", "GIF", "WEBP")
                time = exif_time(image)
                stretch = None
                if mode in WIDE_MODES:
                    grey = np.asarray(image)
                    stretch = stretch_of(grey)
                    rgb = Image.fromarray(apply_stretch(grey, stretch)).convert("RGB")
                    note = f"single band as grey; {preprocessing_note((1,), 1, mode, stretch, False)}"
                else:
                    rgb = image.convert("RGB")  # alpha is dropped, never composited: the colours are the data
                    note = "" if mode in ("RGB", "L", "P", "RGBA", "LA", "PA") else f"mode {mode} converted to RGB"
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise _pillow_bomb(exc, max_pixels) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(f"undecodable image: {clean_message(str(exc), source)}", "corrupt") from exc
    if window is not None:
        x, y, w, h = window
        rgb = rgb.crop((x, y, x + w, y + h))
    if out_size is not None and rgb.size != out_size:
        rgb = rgb.resize(out_size, Image.Resampling.BOX)
    facts = ImageFacts(width, height, bands, mode, note, None, None, time=time, stretch=stretch, web=web)
    return DecodedImage(**facts.__dict__, image=rgb, window=window)
