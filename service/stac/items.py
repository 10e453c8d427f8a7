"""Index items as STAC Items, and the collections they fall into.

An item is a whole small image or one window of a scene. As a STAC Item it keeps its footprint (RFC 7946
winding), `datetime` (its acquisition time), the projection extension v2 (`proj:code`, `proj:bbox`,
`proj:shape`), `gsd`, and two assets: `thumbnail` and `data` (the file, or for a tile its window as a
GeoTIFF: the same URL as a search hit's `image_url`). Items ingested from a STAC catalog keep their STAC
collection, cloud cover and platform, and link back to the source item (when that is a web address); every
other item is in the collection `archive`. The STAC facts are the store's per-scene rows (index.stac_meta),
read once per version with the catalog; folder archives and older stores have none.
"""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
import shapely.geometry

from index.stac_meta import StacRecord
from index.store import ImageRecord, IndexVersion
from service.geo.winding import rfc7946_geometry
from service.links import absolute, image_links
from service.stac_ref import stac_ref
from service.version_cache import per_version

STAC_VERSION = "1.1.0"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
EO = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
ARCHIVE_COLLECTION = "archive"  # items indexed from folders (no STAC collection)
GEOTIFF = "image/tiff; application=geotiff"
SCORE = "posapl:score"  # similarity of the hit to the free-text query `q` (higher is better)


def collection_of(record: ImageRecord, facts: StacRecord | None) -> str:
    """The STAC collection of an item (`facts`: its scene's STAC row), else `archive`."""
    return facts.collection if facts is not None and facts.collection else ARCHIVE_COLLECTION


def item_datetime(record: ImageRecord) -> str:
    """RFC 3339 UTC; versions written before acquisition times fall back to the file time."""
    if record.time is not None:
        moment = datetime.fromisoformat(record.time)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    else:
        moment = datetime.fromtimestamp(record.mtime, UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _data_type(record: ImageRecord) -> str | None:
    if record.window is not None:
        return GEOTIFF
    kind = mimetypes.guess_type(record.path)[0]
    return GEOTIFF if kind == "image/tiff" and record.crs is not None else kind


def _projection(record: ImageRecord) -> dict[str, Any]:
    if record.crs is None:
        return {"proj:code": None}
    width, height = (record.window[2], record.window[3]) if record.window is not None else (record.width, record.height)
    crs = {"proj:code": record.crs} if record.crs.upper().startswith("EPSG:") else {"proj:wkt2": record.crs}
    bbox = {"proj:bbox": list(record.bbox)} if record.bbox is not None else {}
    return {**crs, **bbox, "proj:shape": [height, width]}


def stac_item(record: ImageRecord, facts: StacRecord | None, score: float | None = None) -> dict[str, Any]:
    """The STAC Item of one index item (`facts`: its scene's STAC row, if it came from a STAC item; `score`: its
    relevance to a free-text query, when there was one)."""
    item_id = str(record.id)
    collection = collection_of(record, facts)
    geometry = rfc7946_geometry(record.footprint)
    links = image_links(record.id)
    window = record.window or (0, 0, record.width, record.height)
    properties: dict[str, Any] = {
        "datetime": item_datetime(record),
        **_projection(record),
        "posapl:time_source": record.time_source,
        "posapl:scene_id": str(record.scene_id),
        "posapl:window": list(window),
    }
    if record.gsd is not None and record.gsd > 0:
        properties["gsd"] = record.gsd
    if score is not None:
        properties[SCORE] = score
    extensions = [PROJECTION]
    if facts is not None and facts.platform is not None:
        properties["platform"] = facts.platform
    if facts is not None and facts.cloud_cover is not None:
        properties["eo:cloud_cover"] = facts.cloud_cover
        extensions.append(EO)
    base = f"/stac/collections/{collection}"
    item_links = [
        {"rel": "self", "href": absolute(f"{base}/items/{item_id}"), "type": "application/geo+json"},
        {"rel": "parent", "href": absolute(base), "type": "application/json"},
        {"rel": "collection", "href": absolute(base), "type": "application/json"},
        {"rel": "root", "href": absolute("/stac"), "type": "application/json"},
    ]
    source = stac_ref(facts)
    if source is not None and source.self_href is not None:  # a local catalog's item file is a server path
        item_links.append({"rel": "derived_from", "href": source.self_href, "type": "application/geo+json"})
    data = {"href": links["image_url"], "roles": ["data"], "title": "the file, or a tile's window as GeoTIFF"}
    if (media := _data_type(record)) is not None:
        data["type"] = media
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": item_id,
        "collection": collection,
        "geometry": geometry,
        **({"bbox": list(shapely.geometry.shape(geometry).bounds)} if geometry is not None else {}),
        "properties": properties,
        "links": item_links,
        "assets": {
            "thumbnail": {"href": links["thumbnail_url"], "roles": ["thumbnail"], "title": "thumbnail"},
            "data": data,
        },
    }


@dataclass(frozen=True)
class CollectionInfo:
    id: str
    ids: np.ndarray  # item ids, ascending
    bbox: list[float]  # WGS84 extent of the georeferenced items; the whole world when none is
    interval: list[str | None]  # first and last item datetime


@dataclass(frozen=True)
class StacCatalog:
    """The collections of an index version, built once per version on first use (versions are immutable)."""

    collections: dict[str, CollectionInfo]
    facts: dict[int, StacRecord]  # scene id -> STAC row, for the scenes made from a STAC item

    def of_record(self, record: ImageRecord) -> StacRecord | None:
        return self.facts.get(record.scene_id)

    @classmethod
    def of(cls, version: IndexVersion) -> StacCatalog:
        return _stac_catalog(version)

    @classmethod
    async def of_async(cls, version: IndexVersion) -> StacCatalog:
        """`of` off the event loop: the first call reads every item of the version."""
        return await asyncio.to_thread(cls.of, version)

    @classmethod
    def build(cls, version: IndexVersion) -> StacCatalog:
        records = version.all_images()
        facts = version.stac(sorted({record.scene_id for record in records}))
        grouped: dict[str, list[ImageRecord]] = {}
        for record in records:
            grouped.setdefault(collection_of(record, facts.get(record.scene_id)), []).append(record)
        grouped.setdefault(ARCHIVE_COLLECTION, [])
        found = {}
        for name, records in sorted(grouped.items()):
            footprints = [shapely.from_geojson(r.footprint) for r in records if r.footprint is not None]
            bbox = list(shapely.union_all(footprints).bounds) if footprints else [-180.0, -90.0, 180.0, 90.0]
            times = sorted(item_datetime(r) for r in records)
            ids = np.sort(np.array([r.id for r in records], dtype=np.int64))
            found[name] = CollectionInfo(name, ids, bbox, [times[0], times[-1]] if times else [None, None])
        return cls(found, facts)

    def item_ids(self, names: list[str] | None) -> np.ndarray | None:
        """Ids of the items of these collections (None: no collection restriction)."""
        if names is None:
            return None
        chosen = [self.collections[n].ids for n in names if n in self.collections]
        return np.unique(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


_stac_catalog = per_version(StacCatalog.build)


def collection_document(info: CollectionInfo, version: IndexVersion) -> dict[str, Any]:
    """The STAC Collection of `info`."""
    base = absolute(f"/stac/collections/{info.id}")
    described = (
        "Items indexed from archive folders: small images and windows of georeferenced scenes"
        if info.id == ARCHIVE_COLLECTION
        else f"Items ingested from the STAC collection {info.id}"
    )
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": info.id,
        "title": info.id,
        "description": f"{described} (index version {version.number}, {len(info.ids)} items).",
        "license": "other",
        "extent": {"spatial": {"bbox": [info.bbox]}, "temporal": {"interval": [info.interval]}},
        "links": [
            {"rel": "self", "href": base, "type": "application/json"},
            {"rel": "root", "href": absolute("/stac"), "type": "application/json"},
            {"rel": "parent", "href": absolute("/stac"), "type": "application/json"},
            {"rel": "items", "href": f"{base}/items", "type": "application/geo+json"},
        ],
    }
