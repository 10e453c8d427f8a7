"""A small static STAC catalog over rasterio-made COGs, written with pystac (shared by the STAC tests).

catalog.json                              root catalog
  sentinel-2-l2a/collection.json          collection "sentinel-2-l2a"
    S2A_T33_20200513/…json + B02/B03/B04  B02 at 20 m (half resolution), B03 and B04 at 10 m
    S2B_T33_20210701/…json + bands        cloudier, another platform and year
    S2A_T33_MISSING/…json                 its B03 file does not exist
  landsat-c2-l2/collection.json                collection "landsat-c2-l2": assets keyed red, green, blue
  aerial/catalog.json                     a sub-catalog reached by a relative href
    aerial-rgb/collection.json            collection "aerial-rgb"
      aerial-1/…json + visual.tif         one 3-band visual asset; start_datetime only
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import rasterio
from rasterio.transform import from_origin

EPSG = 32633
ORIGIN = (500000.0, 4000000.0)
SIZE = 128  # 10 m pixels
BBOX = [14.99, 36.13, 15.01, 36.14]
COMMON = {"B02": "blue", "B03": "green", "B04": "red"}


def tiles_by_item(version) -> dict[str, list]:
    """A store version's image records (tiles) grouped by their STAC item id."""
    records = version.all_images()
    stac = version.stac([r.scene_id for r in records])
    grouped: dict[str, list] = {}
    for record in records:
        grouped.setdefault(stac[record.scene_id].item, []).append(record)
    return grouped


def write_cog(path: Path, data: np.ndarray, resolution: float, nodata: float | None = 0) -> None:
    """A Cloud-Optimized GeoTIFF of `data` (bands, rows, cols) in UTM 33N at ORIGIN."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="COG",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=str(data.dtype),
        crs=f"EPSG:{EPSG}",
        transform=from_origin(*ORIGIN, resolution, resolution),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data)


def band_data(seed: int, size: int) -> np.ndarray:
    """Smooth, non-zero uint16 reflectances (a gradient plus noise), so resampling is meaningful."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    field = 1000 + 20 * x + 15 * y + rng.integers(0, 300, size=(size, size))
    return field.astype(np.uint16)[None]


def _item(item_id: str, moment: datetime | None, properties: dict, collection: pystac.Collection | None) -> pystac.Item:
    geometry = {
        "type": "Polygon",
        "coordinates": [
            [[BBOX[0], BBOX[1]], [BBOX[2], BBOX[1]], [BBOX[2], BBOX[3]], [BBOX[0], BBOX[3]], [BBOX[0], BBOX[1]]]
        ],
    }
    item = pystac.Item(item_id, geometry, BBOX, moment, {**properties, "proj:code": f"EPSG:{EPSG}"})
    if collection is not None:
        item.collection_id = collection.id
    return item


def _collection(collection_id: str) -> pystac.Collection:
    extent = pystac.Extent(
        pystac.SpatialExtent([BBOX]), pystac.TemporalExtent([[datetime(2015, 1, 1, tzinfo=UTC), None]])
    )
    return pystac.Collection(collection_id, f"{collection_id} test scenes", extent)


def sentinel_item(
    folder: Path, item_id: str, moment: datetime, cloud: float, platform: str, seed: int, collection: pystac.Collection
) -> pystac.Item:
    """An item with B02 (20 m), B03 and B04 (10 m) COGs next to where its JSON will be written."""
    item = _item(item_id, moment, {"eo:cloud_cover": cloud, "platform": platform}, collection)
    for number, band in enumerate(("B02", "B03", "B04")):
        half = band == "B02"
        href = folder / item_id / f"{band}.tif"
        write_cog(href, band_data(seed + number, SIZE // 2 if half else SIZE), 20.0 if half else 10.0)
        asset = pystac.Asset(f"./{band}.tif", media_type=pystac.MediaType.COG, roles=["data"])
        asset.extra_fields["eo:bands"] = [{"name": band, "common_name": COMMON[band]}]
        item.add_asset(band, asset)
    return item


def write_catalog(root: Path) -> Path:
    """The catalog above under `root`; returns the root catalog.json."""
    catalog = pystac.Catalog("archive", "test archive")
    sentinel = _collection("sentinel-2-l2a")
    s2 = root / "sentinel-2-l2a"
    sentinel.add_item(
        sentinel_item(s2, "S2A_T33_20200513", datetime(2020, 5, 13, 10, tzinfo=UTC), 12.5, "sentinel-2a", 1, sentinel)
    )
    sentinel.add_item(
        sentinel_item(s2, "S2B_T33_20210701", datetime(2021, 7, 1, 10, tzinfo=UTC), 60.0, "sentinel-2b", 11, sentinel)
    )
    missing = sentinel_item(s2, "S2A_T33_MISSING", datetime(2020, 6, 1, tzinfo=UTC), 5.0, "sentinel-2a", 21, sentinel)
    (s2 / "S2A_T33_MISSING" / "B03.tif").unlink()
    sentinel.add_item(missing)
    catalog.add_child(sentinel)

    landsat = _collection("landsat-c2-l2")
    scene = _item(
        "LC08_T33_20190801",
        datetime(2019, 8, 1, tzinfo=UTC),
        {"eo:cloud_cover": 30.0, "platform": "landsat-8"},
        landsat,
    )
    for number, key in enumerate(("red", "green", "blue")):
        write_cog(root / "landsat-c2-l2" / scene.id / f"{key}.tif", band_data(31 + number, SIZE), 10.0)
        scene.add_asset(key, pystac.Asset(f"./{key}.tif", media_type=pystac.MediaType.COG))
    landsat.add_item(scene)
    catalog.add_child(landsat)

    aerial = pystac.Catalog("aerial", "aerial survey")
    planes = _collection("aerial-rgb")
    photo = _item(
        "aerial-1",
        None,
        {
            "start_datetime": "2022-03-04T08:00:00Z",
            "end_datetime": "2022-03-04T09:00:00Z",
            "constellation": "survey-plane",
        },
        planes,
    )
    rgb = np.concatenate([band_data(41 + band, SIZE) for band in range(3)]) // 64
    write_cog(root / "aerial" / "aerial-rgb" / "aerial-1" / "visual.tif", rgb.astype(np.uint8), 10.0, nodata=None)
    photo.add_asset("visual", pystac.Asset("./visual.tif", media_type=pystac.MediaType.COG, roles=["visual"]))
    planes.add_item(photo)
    aerial.add_child(planes)
    catalog.add_child(aerial)

    catalog.normalize_hrefs(str(root))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def write_safe(folder: Path, tile: str = "T33SVB", sensed: str = "20200513T100031") -> Path:
    """A minimal Sentinel-2 L2A SAFE folder that GDAL's SENTINEL2 driver opens: the product and tile metadata
    it reads (band list, granule files, tile geocoding) and lossless JPEG 2000 bands B02, B03, B04 at 10 m and
    20 m in UTM 33N at ORIGIN. Returns the .SAFE folder."""
    safe = folder / f"S2A_MSIL2A_{sensed}_N0214_R122_{tile}_20200513T120000.SAFE"
    granule = f"L2A_{tile}_A025500_{sensed}"
    files = {10: [], 20: []}
    for resolution, size in ((10, SIZE), (20, SIZE // 2)):
        for number, band in enumerate(("B02", "B03", "B04")):
            name = f"GRANULE/{granule}/IMG_DATA/R{resolution}m/{tile}_{sensed}_{band}_{resolution}m"
            files[resolution].append(name)
            path = safe / f"{name}.jp2"
            path.parent.mkdir(parents=True, exist_ok=True)
            profile = dict(
                driver="JP2OpenJPEG",
                width=size,
                height=size,
                count=1,
                dtype="uint16",
                crs=f"EPSG:{EPSG}",
                transform=from_origin(*ORIGIN, resolution, resolution),
                QUALITY=100,
                REVERSIBLE="YES",
            )
            with rasterio.open(path, "w", **profile) as dataset:
                dataset.write(band_data(51 + number, size))
    granules = "".join(
        '<Granule_List><Granule granuleIdentifier="G" imageFormat="JPEG2000">'
        + "".join(f"<IMAGE_FILE>{name}</IMAGE_FILE>" for name in names)
        + "</Granule></Granule_List>"
        for names in files.values()
    )
    bands = "".join(f"<BAND_NAME>{band}</BAND_NAME>" for band in ("B2", "B3", "B4"))
    (safe / "MTD_MSIL2A.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">'
        f"<n1:General_Info><Product_Info><PRODUCT_URI>{safe.name}</PRODUCT_URI>"
        "<PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL><PROCESSING_BASELINE>02.14</PROCESSING_BASELINE>"
        '<Datatake datatakeIdentifier="GS2A"><SPACECRAFT_NAME>Sentinel-2A</SPACECRAFT_NAME></Datatake>'
        f"<Query_Options><PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT><Band_List>{bands}</Band_List></Query_Options>"
        f"<Product_Organisation>{granules}</Product_Organisation>"
        "</Product_Info></n1:General_Info></n1:Level-2A_User_Product>\n"
    )
    geocoding = "".join(
        f'<Size resolution="{r}"><NROWS>{SIZE * 10 // r}</NROWS><NCOLS>{SIZE * 10 // r}</NCOLS></Size>'
        f'<Geoposition resolution="{r}"><ULX>{ORIGIN[0]:g}</ULX><ULY>{ORIGIN[1]:g}</ULY><XDIM>{r}</XDIM>'
        f"<YDIM>-{r}</YDIM></Geoposition>"
        for r in (10, 20)
    )
    (safe / "GRANULE" / granule / "MTD_TL.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<n1:Level-2A_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-2A_Tile_Metadata.xsd">'
        f"<n1:Geometric_Info><Tile_Geocoding><HORIZONTAL_CS_CODE>EPSG:{EPSG}</HORIZONTAL_CS_CODE>{geocoding}"
        "</Tile_Geocoding></n1:Geometric_Info></n1:Level-2A_Tile_ID>\n"
    )
    return safe
