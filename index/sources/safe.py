"""Sentinel-2 SAFE folders in a band folder: one scene each, read through GDAL's SENTINEL2 driver.

A SAFE product (``S2A_MSIL2A_20200513T100031_N0214_R122_T33SVB_….SAFE``) keeps each band in its own JPEG 2000
file under ``GRANULE/…/IMG_DATA/`` and describes them in ``MTD_MSIL2A.xml`` (``MTD_MSIL1C.xml`` for Level-1C).
GDAL's SENTINEL2 driver (in rasterio's wheels) reads that metadata and offers the bands of each resolution as one
subdataset (``SENTINEL2_L2A:…/MTD_MSIL2A.xml:10m:EPSG_32633``), with the red, green and blue bands marked as
such. The scene is the stack (index.sources.stack) of those three bands of the 10 m subdataset, so everything
downstream reads it as any stacked VRT. The VRT is named after the SAFE folder, whose name holds the sensing
time (index.acquired reads it).
"""

from __future__ import annotations

from pathlib import Path

import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError

from index.sources.stack import StackError, stack_vrt

SAFE_SUFFIX = ".safe"  # compared lower-case
PRODUCT_METADATA = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")
RESOLUTION = ":10m:"  # the subdataset of the blue, green, red (and NIR) bands
TRUE_COLOUR = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)


def product_metadata(folder: Path) -> Path | None:
    """The product metadata file of a ``*.SAFE`` folder; None for any other folder."""
    if not folder.name.lower().endswith(SAFE_SUFFIX):
        return None
    return next((folder / name for name in PRODUCT_METADATA if (folder / name).is_file()), None)


def safe_vrt(metadata: Path) -> str:
    """The XML of a VRT of the true-colour bands (red, green, blue) of the product's 10 m subdataset."""
    try:
        with rasterio.open(metadata) as product:
            subdatasets = [name for name in product.subdatasets if RESOLUTION in name]
        if not subdatasets:
            raise StackError(f"GDAL's SENTINEL2 driver finds no 10 m bands in {metadata.name}")
        with rasterio.open(subdatasets[0]) as bands:
            colours = list(bands.colorinterp)
    except RasterioError as exc:
        raise StackError(f"GDAL's SENTINEL2 driver cannot read {metadata.name}: {exc}") from exc
    missing = [colour.name for colour in TRUE_COLOUR if colour not in colours]
    if missing:
        raise StackError(f"the 10 m bands of {metadata.name} have no {', '.join(missing)} band")
    selected = tuple(colours.index(colour) + 1 for colour in TRUE_COLOUR)
    return stack_vrt([subdatasets[0]], {"SENTINEL2_PRODUCT": metadata.parent.name}, [selected])
