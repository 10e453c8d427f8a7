"""Georeferenced rasters (GeoTIFF, COG, JPEG 2000, VRT) for index.decode: read with rasterio, window by window
and from overviews, so a scene is never loaded whole.

Each thread keeps its last few scenes open (`_OpenScenes`), so that neighbouring windows of a scene reuse GDAL's
block cache. A scene's stretch comes from a bounded, deterministic sample (`_scene_sample`), so every caller
computes the same one.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader, MemoryFile
from rasterio.windows import Window

from index.acquired import raster_time
from index.decode_facts import (
    BadImageError,
    ImageFacts,
    PixelWindow,
    Source,
    apply_stretch,
    check_pixels,
    gdal_reason,
    preprocessing_note,
    stretch_of,
)
from index.vrt import is_vrt, remote_source

STATS_PIXELS = 4_000_000  # scenes up to this many pixels are read whole for their stretch
STATS_SAMPLES = 10  # otherwise an even grid of STATS_SAMPLES^2 small windows (or an overview)
STATS_WINDOW = 64
STATS_OVERVIEW_PIXELS = 512 * 512  # the coarsest overview with at least this many pixels
OPEN_SCENES = 2  # datasets each thread keeps open (see _OpenScenes)
# GDAL's block cache defaults to 5% of RAM per process; every decode worker has one, so bound it.
os.environ.setdefault("GDAL_CACHEMAX", "128")


def _crs_text(crs: rasterio.crs.CRS | None) -> str | None:
    if crs is None:
        return None
    authority = crs.to_authority()
    return f"{authority[0]}:{authority[1]}" if authority else crs.to_wkt()


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
def open_raster(source: Source) -> Iterator[DatasetReader]:
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
        raise BadImageError(f"unreadable raster: {gdal_reason(exc, source)}", "corrupt") from exc


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


def raster_facts(dataset: DatasetReader, bands: tuple[int, ...] | None, with_stretch: bool) -> ImageFacts:
    selected = _select(dataset, bands)
    palette = len(selected) == 1 and dataset.colorinterp[selected[0] - 1] == ColorInterp.palette
    dtype = dataset.dtypes[selected[0] - 1]
    stretch = None
    if with_stretch and dtype != "uint8":
        stretch = stretch_of(_scene_sample(dataset, selected))
    georeferenced = dataset.crs is not None and not dataset.transform.is_identity
    explicit = bands is not None
    note = "palette colours" if palette else preprocessing_note(selected, dataset.count, dtype, stretch, explicit)
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


def read_raster(
    dataset: DatasetReader,
    facts: ImageFacts,
    window: PixelWindow | None,
    out_size: tuple[int, int] | None,
    max_pixels: int,
) -> tuple[Image.Image, np.ndarray]:
    x, y, width, height = window or (0, 0, dataset.width, dataset.height)
    if out_size is None:
        check_pixels(width, height, max_pixels)
        out_w, out_h = width, height
    else:
        out_w, out_h = out_size
        check_pixels(out_w, out_h, max_pixels)
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
        pixels = apply_stretch(np.moveaxis(data, 0, -1), facts.stretch)
        rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
    return Image.fromarray(np.ascontiguousarray(rgb), mode="RGB"), masks
