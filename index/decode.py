"""The one decode path: an archive file, an upload or one window of a scene -> 8-bit RGB plus facts.

The indexer, the upload endpoint, thumbnails and the full-size view all call `decode_image`, so an upload of an
archive file yields exactly the pixels the indexer embedded. Georeferenced rasters (GeoTIFF, COG, JPEG 2000)
are read with rasterio, window by window and from overviews, so a scene is never loaded whole; plain web
images (JPEG, PNG, GIF, WebP, BMP) are read with Pillow. Non-8-bit data is stretched to 8 bits with one
stretch per *scene* (`probe`), applied identically to every window of that scene and to an upload of the same
file, so neighbouring tiles look alike. Anything that cannot be decoded safely raises BadImageError with the
reason (never a server path) for the report or the HTTP error.
"""

from __future__ import annotations

import io
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, UnidentifiedImageError
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader, MemoryFile
from rasterio.windows import Window

from index.acquired import exif_time, raster_time
from index.vrt import VRT_SUFFIX, is_vrt, remote_source

IMAGE_SUFFIXES = frozenset(  # .vrt: archive files only (index.vrt)
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".jp2", ".j2k", ".gif", ".webp", ".bmp", VRT_SUFFIX}
)
PERCENTILES = (2.0, 98.0)
WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})  # Pillow would clip these, not scale them
# Magic numbers of what GDAL reads better than Pillow (georeferencing, windows, overviews, any bit depth).
RASTER_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", b"\x00\x00\x00\x0cjP  ", b"\xffO\xffQ")
STATS_PIXELS = 4_000_000  # scenes up to this many pixels are read whole for their stretch
STATS_SAMPLES = 10  # otherwise an even grid of STATS_SAMPLES^2 small windows (or an overview)
STATS_WINDOW = 64
STATS_OVERVIEW_PIXELS = 512 * 512  # the coarsest overview with at least this many pixels
OPEN_SCENES = 2  # datasets each thread keeps open (see _OpenScenes)
# GDAL's block cache defaults to 5% of RAM per process; every decode worker has one, so bound it.
os.environ.setdefault("GDAL_CACHEMAX", "128")
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


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise BadImageError(f"empty image ({width}x{height})", "corrupt")
    if width * height > max_pixels:
        raise BadImageError(
            f"decompression bomb: {width}x{height} = {width * height} pixels > limit {max_pixels}", "bomb"
        )


def _clean(message: str, source: Source) -> str:
    """GDAL puts the file name in its messages: keep the base name only, never a server path."""
    if isinstance(source, Path):
        message = message.replace(str(source), source.name)
    return VSIMEM.sub("upload", message)


def _reason(exc: BaseException, source: Source) -> str:
    """GDAL's own words for a failure: rasterio chains them behind a generic "Read failed" message."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 3:
        text = str(current).strip()
        if text and text not in parts and "See previous exception" not in text:
            parts.append(text)
        current = current.__cause__ or current.__context__
    return _clean("; ".join(parts) or type(exc).__name__, source)


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


def _crs_text(crs: rasterio.crs.CRS | None) -> str | None:
    if crs is None:
        return None
    authority = crs.to_authority()
    return f"{authority[0]}:{authority[1]}" if authority else crs.to_wkt()


def _stretch_of(values: np.ndarray) -> Stretch:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise BadImageError("no valid pixel values (every pixel is nodata or masked)", "corrupt")
    low, high = np.percentile(finite.astype(np.float64), PERCENTILES)
    return Stretch(float(low), float(high) if high > low else float(low) + 1.0)


def _apply(data: np.ndarray, stretch: Stretch | None) -> np.ndarray:
    """(..., bands) numeric -> uint8 by the scene's stretch; 8-bit data passes unchanged."""
    if stretch is None:
        return data.astype(np.uint8, copy=False)
    scaled = (np.nan_to_num(data.astype(np.float64), nan=stretch.low) - stretch.low) / (stretch.high - stretch.low)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _note(selected: tuple[int, ...], count: int, dtype: str, stretch: Stretch | None, explicit: bool) -> str:
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


# --- rasterio -------------------------------------------------------------------------------------------


class _OpenScenes(threading.local):
    """The last few scenes this thread opened, kept open so that neighbouring windows of a scene reuse GDAL's
    block cache (a window touches the same compressed blocks as its neighbours) instead of decompressing
    them again. Per thread, because a GDAL dataset must not be shared between threads; keyed by size and
    mtime, so a replaced file is reopened."""

    def __init__(self) -> None:
        self.open: OrderedDict[tuple[str, int, int], DatasetReader] = OrderedDict()
        self.pid = os.getpid()

    def get(self, path: Path) -> DatasetReader:
        if self.pid != os.getpid():  # a forked worker: the parent's handles share its file offsets, never use them
            self.open, self.pid = OrderedDict(), os.getpid()
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        dataset = self.open.pop(key, None)
        if dataset is None:
            remote = remote_source(path) if is_vrt(path) else None
            if remote is not None:
                raise BadImageError(f"VRT source {remote} is not a local file; the indexer never reads the network")
            dataset = rasterio.open(path)
        self.open[key] = dataset
        while len(self.open) > OPEN_SCENES:
            self.open.popitem(last=False)[1].close()
        return dataset

    def drop(self, path: Path) -> None:
        for key in [k for k in self.open if k[0] == str(path)]:
            self.open.pop(key).close()


_scenes = _OpenScenes()


@contextmanager
def _open_raster(source: Source) -> Iterator[DatasetReader]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            if isinstance(source, bytes):
                with MemoryFile(source) as memory, memory.open() as dataset:
                    yield dataset
            else:
                try:
                    yield _scenes.get(source)
                except BaseException:
                    _scenes.drop(source)  # a failed read may leave the dataset in any state
                    raise
    except BadImageError:
        raise
    except (RasterioError, OSError, ValueError) as exc:
        raise BadImageError(f"unreadable raster: {_reason(exc, source)}", "corrupt") from exc


def _select(dataset: DatasetReader, bands: tuple[int, ...] | None) -> tuple[int, ...]:
    if bands is not None:
        if len(bands) not in (1, 3):
            raise BadImageError(f"band selection needs 1 or 3 bands, got {len(bands)}", "bands")
        beyond = [b for b in bands if not 1 <= b <= dataset.count]
        if beyond:
            raise BadImageError(f"band {beyond[0]} requested but the file has {dataset.count} bands", "bands")
        return tuple(bands)
    interp = list(dataset.colorinterp)
    rgb = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if all(colour in interp for colour in rgb):
        return tuple(interp.index(colour) + 1 for colour in rgb)
    data = [i + 1 for i, colour in enumerate(interp) if colour != ColorInterp.alpha] or [1]
    return tuple(data[:3]) if len(data) >= 3 else (data[0],)


def _scene_sample(dataset: DatasetReader, selected: tuple[int, ...]) -> np.ndarray:
    """Valid values of the selected bands, from the whole scene when small, else from an overview or from an
    even grid of small windows: deterministic, so every caller computes the same stretch."""
    width, height = dataset.width, dataset.height
    if width * height <= STATS_PIXELS:
        parts = [dataset.read(list(selected), masked=True)]
    elif dataset.overviews(selected[0]):
        factors = dataset.overviews(selected[0])
        big_enough = [f for f in factors if (width // f) * (height // f) >= STATS_OVERVIEW_PIXELS]
        factor = max(big_enough) if big_enough else min(factors)
        shape = (len(selected), max(1, height // factor), max(1, width // factor))
        parts = [dataset.read(list(selected), out_shape=shape, masked=True)]
    else:
        xs = np.linspace(0, max(0, width - STATS_WINDOW), STATS_SAMPLES).astype(int)
        ys = np.linspace(0, max(0, height - STATS_WINDOW), STATS_SAMPLES).astype(int)
        parts = [
            dataset.read(list(selected), window=Window(int(x), int(y), STATS_WINDOW, STATS_WINDOW), masked=True)
            for y in sorted(set(ys.tolist()))
            for x in sorted(set(xs.tolist()))
        ]
    values = [np.ma.compressed(part) for part in parts]
    return np.concatenate(values) if values else np.zeros(0)


def _raster_facts(dataset: DatasetReader, bands: tuple[int, ...] | None, with_stretch: bool) -> ImageFacts:
    selected = _select(dataset, bands)
    palette = len(selected) == 1 and dataset.colorinterp[selected[0] - 1] == ColorInterp.palette
    dtype = dataset.dtypes[selected[0] - 1]
    stretch = None
    if with_stretch and dtype != "uint8":
        stretch = _stretch_of(_scene_sample(dataset, selected))
    georeferenced = dataset.crs is not None and not dataset.transform.is_identity
    note = "palette colours" if palette else _note(selected, dataset.count, dtype, stretch, bands is not None)
    return ImageFacts(
        width=dataset.width,
        height=dataset.height,
        bands=dataset.count,
        dtype=dtype,
        preprocessing=note,
        bbox=tuple(float(v) for v in dataset.bounds) if georeferenced else None,
        crs=_crs_text(dataset.crs) if georeferenced else None,
        transform=tuple(float(v) for v in tuple(dataset.transform)[:6]) if georeferenced else None,
        time=raster_time(dataset),
        selected=selected,
        stretch=stretch,
        reader="rasterio",
        web=False,
    )


def _read_raster(
    dataset: DatasetReader,
    facts: ImageFacts,
    window: PixelWindow | None,
    out_size: tuple[int, int] | None,
    max_pixels: int,
) -> tuple[Image.Image, np.ndarray]:
    x, y, width, height = window or (0, 0, dataset.width, dataset.height)
    if out_size is None:
        _check_pixels(width, height, max_pixels)
        out_w, out_h = width, height
    else:
        out_w, out_h = out_size
        _check_pixels(out_w, out_h, max_pixels)
    shape = (len(facts.selected), out_h, out_w)
    resampling = Resampling.nearest if out_size is None else Resampling.average
    box = Window(x, y, width, height)
    data = dataset.read(list(facts.selected), window=box, out_shape=shape, resampling=resampling, boundless=False)
    masks = dataset.read_masks(facts.selected[0], window=box, out_shape=(out_h, out_w), resampling=Resampling.nearest)
    if facts.preprocessing == "palette colours":
        table = dataset.colormap(facts.selected[0])
        lut = np.zeros((256, 3), dtype=np.uint8)
        for index, colour in table.items():
            if 0 <= index < 256:
                lut[index] = colour[:3]
        rgb = lut[data[0].astype(np.uint8)]
    else:
        pixels = _apply(np.moveaxis(data, 0, -1), facts.stretch)
        rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
    return Image.fromarray(np.ascontiguousarray(rgb), mode="RGB"), masks


# --- Pillow ---------------------------------------------------------------------------------------------


def _pillow_bomb(exc: Image.DecompressionBombError, max_pixels: int | None) -> BadImageError:
    """Pillow refuses twice its own MAX_IMAGE_PIXELS before our check can run: quote the configured limit, which
    is the one the operator set and can change (Pillow's number is neither)."""
    if max_pixels is None:
        return BadImageError(f"decompression bomb: {exc}", "bomb")
    return BadImageError(f"decompression bomb: the image has more pixels than the limit of {max_pixels}", "bomb")


def _open_pil(source: Source, max_pixels: int | None = None) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UnidentifiedImageError as exc:
        raise BadImageError("not an image (unrecognised format)", "not_an_image") from exc
    except Image.DecompressionBombError as exc:
        raise _pillow_bomb(exc, max_pixels) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"undecodable image: {_clean(str(exc), source)}", "corrupt") from exc
    return image


def _decode_pil(
    source: Source, max_pixels: int, window: PixelWindow | None, out_size: tuple[int, int] | None
) -> DecodedImage:
    try:
        with warnings.catch_warnings():
            # The pixel limit is ours (checked before load); Pillow's own warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open_pil(source, max_pixels) as image:
                width, height = image.size
                _check_pixels(width, height, max_pixels)
                image.seek(0)
                image.load()
                bands, mode, web = len(image.getbands()), image.mode, image.format in ("JPEG", "PNG", "GIF", "WEBP")
                time = exif_time(image)
                stretch = None
                if mode in WIDE_MODES:
                    grey = np.asarray(image)
                    stretch = _stretch_of(grey)
                    rgb = Image.fromarray(_apply(grey, stretch)).convert("RGB")
                    note = f"single band as grey; {_note((1,), 1, mode, stretch, False)}"
                else:
                    rgb = image.convert("RGB")  # alpha is dropped, never composited: the colours are the data
                    note = "" if mode in ("RGB", "L", "P", "RGBA", "LA", "PA") else f"mode {mode} converted to RGB"
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise _pillow_bomb(exc, max_pixels) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(f"undecodable image: {_clean(str(exc), source)}", "corrupt") from exc
    if window is not None:
        x, y, w, h = window
        rgb = rgb.crop((x, y, x + w, y + h))
    if out_size is not None and rgb.size != out_size:
        rgb = rgb.resize(out_size, Image.Resampling.BOX)
    facts = ImageFacts(width, height, bands, mode, note, None, None, time=time, stretch=stretch, web=web)
    return DecodedImage(**facts.__dict__, image=rgb, window=window)


# --- the one entry point --------------------------------------------------------------------------------


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
        with _open_raster(source) as dataset:
            try:
                return _raster_facts(dataset, bands, with_stretch=True)
            except (RasterioError, OSError) as exc:
                raise BadImageError(f"unreadable raster: {_reason(exc, source)}", "corrupt") from exc
    return _decode_pil(source, max_pixels if max_pixels is not None else 1 << 62, None, (1, 1)).facts()


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
        return _decode_pil(source, max_pixels, window, out_size)
    with _open_raster(source) as dataset:
        try:
            if window is None and out_size is None:
                _check_pixels(dataset.width, dataset.height, max_pixels)
            facts = scene if scene is not None else _raster_facts(dataset, bands, with_stretch=True)
            if window is not None:
                x, y, w, h = window
                if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > dataset.width or y + h > dataset.height:
                    raise BadImageError(f"window {window} is outside the {dataset.width}x{dataset.height} scene")
            image, mask = _read_raster(dataset, facts, window, out_size, max_pixels)
        except (RasterioError, OSError) as exc:
            raise BadImageError(f"unreadable raster: {_reason(exc, source)}", "corrupt") from exc
    valid = float(np.count_nonzero(mask)) / mask.size if mask.size else 0.0
    return DecodedImage(**facts.__dict__, image=image, window=window, valid=valid, mask=mask)



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


def dimensions(source: Source) -> tuple[int, int]:
    """(width, height) from the header alone, to decide between one item and tiles without decoding pixels."""
    _check_source(source)
    if is_raster(source):
        with _open_raster(source) as dataset:
            return dataset.width, dataset.height
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open_pil(source) as image:
            return image.size
