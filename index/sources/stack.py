"""Stack single-band (or RGB) rasters as ONE scene: a GDAL VRT, one band per input band, on the first input's grid.

A Sentinel-2 item keeps each band in its own file, some at 10 m and some at 20 m. The indexer reads scenes
through one decode path (index.decode), which already reads VRTs (index.vrt); so the stack is written as a VRT
and everything downstream (tiling, window reads, hashing, downloads) stays the same. The VRT only points at
the inputs: GDAL reads each tile's window from them, resampling a coarser band to the first band's grid
(bilinear), so no process holds a whole scene and nothing is copied.

Inputs in the first input's CRS must be axis-aligned (as bands of one product are); their extents may differ, a
band's area outside its file being nodata. An input in another CRS is warped onto the first input's grid: its
source in the stack is the warped VRT of rasterio's `WarpedVRT` (GDAL's own XML of it, written inline), so GDAL's
warper reads it window by window too, bilinear, never the whole raster. `proj:*` fields of a STAC item are hints
only: the grid is the one each file states.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT

RESAMPLING = "bilinear"  # coarser bands, and bands in another CRS, onto the first band's grid
SUBDATASET = re.compile(r"^[A-Z][A-Z0-9_]+:")  # a driver's subdataset name (SENTINEL2_L2A:…), not a file path


class StackError(ValueError):
    """The inputs cannot be stacked (unreadable, not georeferenced, rotated)."""


@dataclass(frozen=True)
class _Input:
    name: str  # what GDAL opens: a local path or a /vsicurl/ URL
    width: int
    height: int
    count: int
    dtype: str
    transform: rasterio.Affine
    crs: rasterio.crs.CRS | None
    nodata: float | None


def _inspect(name: str) -> _Input:
    if not name.startswith("/vsi") and not SUBDATASET.match(name) and not Path(name).is_file():
        raise StackError(f"asset file {name} does not exist")
    try:
        with rasterio.open(name) as dataset:
            return _Input(
                name, dataset.width, dataset.height, dataset.count, dataset.dtypes[0], dataset.transform,
                dataset.crs, dataset.nodata,
            )
    except (RasterioError, OSError) as exc:
        raise StackError(f"unreadable asset {name}: {exc}") from exc


def _data_type(dtype: str) -> str:
    """GDAL's name of a numpy dtype (uint8 -> Byte, int16 -> Int16 ...)."""
    names = {"uint8": "Byte", "int8": "Int8", "complex64": "CFloat32", "complex128": "CFloat64"}
    return names.get(dtype) or dtype[0].upper() + dtype[1:].replace("uint", "UInt").replace("float", "Float")


def _common_dtype(inputs: list[_Input]) -> str:
    """The widest of the inputs' types, so no band is clipped (Sentinel-2 bands are all uint16)."""
    return str(np.result_type(*(item.dtype for item in inputs)))


def _destination(base: _Input, item: _Input) -> tuple[float, float, float, float]:
    """Where `item` lies on `base`'s pixel grid: x offset, y offset, width, height (in base pixels)."""
    if item.transform.b != 0 or item.transform.d != 0 or base.transform.b != 0 or base.transform.d != 0:
        raise StackError(f"{item.name} is rotated or sheared; only axis-aligned grids are stacked")
    x, y = ~base.transform @ (item.transform.c, item.transform.f)
    scale_x = item.transform.a / base.transform.a
    scale_y = item.transform.e / base.transform.e
    return x, y, item.width * scale_x, item.height * scale_y


def _warped(base: _Input, item: _Input) -> _Input:
    """`item` warped onto `base`'s grid: an input whose name is the XML of rasterio's WarpedVRT of it."""
    if item.crs is None:
        raise StackError(f"{item.name} has no CRS, so it cannot be warped to {base.crs} like {base.name}")
    try:
        with rasterio.open(item.name) as dataset, WarpedVRT(
            dataset, crs=base.crs, transform=base.transform, width=base.width, height=base.height,
            resampling=Resampling[RESAMPLING],
        ) as warped:
            xml = warped.tags(ns="xml:VRT").get("xml:VRT")
    except (RasterioError, OSError) as exc:
        raise StackError(f"cannot warp {item.name} to {base.crs}: {exc}") from exc
    if not xml:
        raise StackError(f"GDAL gave no warped VRT of {item.name}")
    return _Input(xml, base.width, base.height, item.count, item.dtype, base.transform, base.crs, item.nodata)


def stack_vrt(
    names: list[str], metadata: dict[str, str] | None = None, bands: list[tuple[int, ...]] | None = None
) -> str:
    """The XML of a VRT with every band of `names` in order (or the 1-based `bands` of each), on the grid of the
    first one.

    `metadata` is written as the VRT's own metadata items (e.g. what the stack was made from); it is part of
    the VRT's bytes, so it is part of the scene's content hash (index.vrt).
    """
    if not names:
        raise StackError("nothing to stack")
    inputs = [_inspect(name) for name in names]
    base = inputs[0]
    if base.crs is None:
        raise StackError(f"{base.name} has no CRS; stacked bands must be georeferenced")
    dtype = _data_type(_common_dtype(inputs))
    root = ElementTree.Element("VRTDataset", rasterXSize=str(base.width), rasterYSize=str(base.height))
    ElementTree.SubElement(root, "SRS").text = base.crs.to_wkt()
    ElementTree.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in base.transform.to_gdal())
    if metadata:
        block = ElementTree.SubElement(root, "Metadata")
        for key, value in metadata.items():
            ElementTree.SubElement(block, "MDI", key=key).text = value
    band_number = 0
    for number, item in enumerate(inputs):
        if item.crs != base.crs:
            item = _warped(base, item)
        x, y, width, height = _destination(base, item)
        for source_band in bands[number] if bands else range(1, item.count + 1):
            band_number += 1
            band = ElementTree.SubElement(root, "VRTRasterBand", dataType=dtype, band=str(band_number))
            if item.nodata is not None:
                ElementTree.SubElement(band, "NoDataValue").text = repr(float(item.nodata))
            source = ElementTree.SubElement(band, "ComplexSource", resampling=RESAMPLING)
            ElementTree.SubElement(source, "SourceFilename", relativeToVRT="0").text = item.name
            ElementTree.SubElement(source, "SourceBand").text = str(source_band)
            ElementTree.SubElement(
                source, "SrcRect", xOff="0", yOff="0", xSize=str(item.width), ySize=str(item.height)
            )
            ElementTree.SubElement(
                source, "DstRect", xOff=repr(x), yOff=repr(y), xSize=repr(width), ySize=repr(height)
            )
            if item.nodata is not None:
                ElementTree.SubElement(source, "NODATA").text = repr(float(item.nodata))
    return ElementTree.tostring(root, encoding="unicode")


def write_if_changed(path: Path, text: str) -> None:
    """Write `path` only when its text differs: an unchanged VRT keeps its modification time."""
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
