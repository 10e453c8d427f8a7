"""What decoding returns and how it fails, shared by the raster and Pillow readers of index.decode.

`ImageFacts` are the facts of a whole file (a scene), the same for every window of it; `DecodedImage` adds the
8-bit RGB pixels of one window. Non-8-bit data becomes 8-bit by one linear `Stretch` per scene (its 2nd-98th
percentiles), so every window of a scene, and an upload of the same file, gets the same colours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

PERCENTILES = (2.0, 98.0)
VSIMEM = re.compile(r"/vsimem/\S+")

Source = Path | bytes
PixelWindow = tuple[int, int, int, int]  # x (column), y (row), width, height in scene pixels


class BadImageError(ValueError):
    """A file that must not enter the index (or an upload to refuse); the message is the reason.

    `kind` says what went wrong so the service can pick a status: "empty", "not_an_image", "bomb", "bands",
    "corrupt".
    """

    def __init__(self, message: str, kind: str = "corrupt") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Stretch:
    """Linear map of the scene's values [low, high] to [0, 255], shared by all selected bands."""

    low: float
    high: float


@dataclass(frozen=True)
class ImageFacts:
    """What decoding learned about a whole file (a scene); the same for every window of it."""

    width: int
    height: int
    bands: int  # bands in the file
    dtype: str
    preprocessing: str  # how the file becomes 8-bit RGB ("" when it already is)
    bbox: tuple[float, float, float, float] | None  # native bounds (min_x, min_y, max_x, max_y), georeferenced only
    crs: str | None  # "EPSG:n" when the CRS has an authority code, else WKT
    transform: tuple[float, float, float, float, float, float] | None = None  # affine a, b, c, d, e, f
    time: str | None = None  # acquisition time from the file's metadata, ISO-8601 UTC (index.acquired)
    selected: tuple[int, ...] = ()  # 1-based bands read (1 band: grey)
    stretch: Stretch | None = None
    reader: str = "pillow"  # "rasterio" | "pillow"
    web: bool = False  # a format every browser shows as it is (JPEG, PNG, GIF, WebP)


@dataclass(frozen=True)
class DecodedImage(ImageFacts):
    image: Image.Image = field(kw_only=True)  # 8-bit RGB of the window (resized when out_size was given)
    window: PixelWindow | None = field(default=None, kw_only=True)
    valid: float = field(default=1.0, kw_only=True)  # fraction of the window's pixels that hold data
    # Rasters only: per output pixel, 255 where it holds data and 0 where it is nodata (or masked), so a view
    # can make those transparent; None for Pillow images, whose pixels all hold data.
    mask: np.ndarray | None = field(default=None, kw_only=True, repr=False)

    def facts(self) -> ImageFacts:
        return ImageFacts(**{name: getattr(self, name) for name in ImageFacts.__dataclass_fields__})


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise BadImageError(f"empty image ({width}x{height})", "corrupt")
    if width * height > max_pixels:
        raise BadImageError(
            f"decompression bomb: {width}x{height} = {width * height} pixels > limit {max_pixels}", "bomb"
        )


def clean_message(message: str, source: Source) -> str:
    """GDAL puts the file name in its messages: keep the base name only, never a server path."""
    if isinstance(source, Path):
        message = message.replace(str(source), source.name)
    return VSIMEM.sub("upload", message)


def gdal_reason(exc: BaseException, source: Source) -> str:
    """GDAL's own words for a failure: rasterio chains them behind a generic "Read failed" message."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 3:
        text = str(current).strip()
        if text and text not in parts and "See previous exception" not in text:
            parts.append(text)
        current = current.__cause__ or current.__context__
    return clean_message("; ".join(parts) or type(exc).__name__, source)


def stretch_of(values: np.ndarray) -> Stretch:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise BadImageError("no valid pixel values (every pixel is nodata or masked)", "corrupt")
    low, high = np.percentile(finite.astype(np.float64), PERCENTILES)
    return Stretch(float(low), float(high) if high > low else float(low) + 1.0)


def apply_stretch(data: np.ndarray, stretch: Stretch | None) -> np.ndarray:
    """(..., bands) numeric -> uint8 by the scene's stretch; 8-bit data passes unchanged."""
    if stretch is None:
        return data.astype(np.uint8, copy=False)
    scaled = (np.nan_to_num(data.astype(np.float64), nan=stretch.low) - stretch.low) / (stretch.high - stretch.low)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def preprocessing_note(
    selected: tuple[int, ...], count: int, dtype: str, stretch: Stretch | None, explicit: bool
) -> str:
    notes = []
    if len(selected) == 1 and (count > 1 or explicit):
        notes.append(f"band {selected[0]} of {count} as grey")
    elif len(selected) == 3 and (explicit or selected != (1, 2, 3) or count > 3):
        notes.append(f"bands {','.join(map(str, selected))} of {count}")
    if stretch is not None:
        notes.append(
            f"{dtype} scaled to 8-bit by per-scene percentiles p{PERCENTILES[0]:g}={stretch.low:.6g} "
            f"p{PERCENTILES[1]:g}={stretch.high:.6g}"
        )
    return "; ".join(notes)


def facts_from_dict(data: dict) -> ImageFacts:
    """Inverse of dataclasses.asdict for ImageFacts (checkpoints store facts as JSON)."""
    return ImageFacts(
        **{
            **data,
            "bbox": tuple(data["bbox"]) if data.get("bbox") else None,
            "transform": tuple(data["transform"]) if data.get("transform") else None,
            "selected": tuple(data.get("selected") or ()),
            "stretch": Stretch(**data["stretch"]) if data.get("stretch") else None,
        }
    )
