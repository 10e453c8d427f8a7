"""STAC catalogs as an archive: every item becomes one scene, a stacked VRT of its chosen assets.

Accepted inputs (`posapl index build|update --stac PATH`):

- a static catalog or collection (``catalog.json`` / ``collection.json``), walked recursively through its
  ``child`` and ``item`` links with pystac;
- an ItemCollection (a GeoJSON FeatureCollection of items) or a single item;
- newline-delimited items (one item JSON a line).

Asset hrefs may be relative (to the item's file, else to the listing file), absolute, ``file://`` or ``http(s)``
URLs. An ``http(s)`` asset is read through GDAL's ``/vsicurl/`` (range requests: the header, then the blocks of
each window), from the VRTs the store writes only (index.vrt); its content stands as the server's ETag,
Last-Modified and size (a HEAD request at every scan), so it is never downloaded whole.

Each run reads the whole catalog again and rewrites ROOT/stac/<n>/ (one folder per catalog): one VRT per item, named
after its collection and id, holding the item's metadata. The VRT folder is then an ordinary source folder of the
store: scanning, content hashes, reuse, removal and the publish step are those of image folders. A VRT's hash covers
its XML (so the item's JSON, through its digest) and the size and mtime of the asset files it reads, or the HEAD
answer of a remote one (index.vrt), so an item whose JSON or asset content changed is replaced, and a removed item
is dropped. An item that cannot be used (malformed JSON, no chosen asset, missing or unreadable asset file) is
reported as skipped and never stops the run; a catalog that cannot be read at all fails the run, so the live version
stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pystac

from index.acquired import parse_time
from index.sources.stack import StackError, stack_vrt, write_if_changed

STAC_FOLDER = "stac"  # under the store root: ROOT/stac/<catalog number>/<collection>/<item>.vrt
DEFAULT_ASSETS = ("visual",)
ITEM_DIGEST_KEY = "STAC_ITEM_SHA256"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StacFacts:
    """What an indexed scene keeps of its STAC item (returned on hits, used by filters)."""

    item: str
    collection: str | None
    datetime: str | None  # ISO-8601 UTC: the item's datetime, else its start_datetime
    cloud_cover: float | None  # eo:cloud_cover, percent
    platform: str | None  # platform, else constellation
    self_href: str | None


@dataclass
class CatalogScenes:
    """The VRT folder of one catalog after a run: its scenes (relative VRT path -> facts) and what was skipped."""

    folder: Path
    scenes: dict[str, StacFacts] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _listing_items(path: Path) -> tuple[list[tuple[dict[str, Any] | None, str]], list[tuple[str, str]]]:
    """(item dict or None, where) of an ItemCollection, single item or newline-delimited items, plus the
    reasons for lines that are not items."""
    text = path.read_text()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("type") == "FeatureCollection":
        return [(f, f"{path} feature {n}") for n, f in enumerate(document.get("features") or [], 1)], []
    if isinstance(document, dict) and document.get("type") == "Feature":
        return [(document, str(path))], []
    found, skipped = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            found.append((json.loads(line), f"{path} line {number}"))
        except ValueError as exc:
            skipped.append((f"{path} line {number}", f"malformed STAC item: not JSON ({exc})"))
    if not found and not skipped:
        raise ValueError(f"{path} holds no STAC items")
    return found, skipped


def _walk(catalog: pystac.Catalog, seen: set[str]) -> tuple[list[pystac.Item], list[tuple[str, str]]]:
    """Every item under `catalog`, following child links; a link that cannot be read is reported, not fatal."""
    items: list[pystac.Item] = []
    skipped: list[tuple[str, str]] = []
    for link in catalog.get_links(pystac.RelType.ITEM):
        href = link.get_absolute_href() or link.href
        try:
            items.append(pystac.Item.from_file(href))
        except Exception as exc:  # noqa: BLE001 - pystac raises many kinds for a bad item; each is reported
            skipped.append((href, f"malformed STAC item: {exc}"))
    for link in catalog.get_links(pystac.RelType.CHILD):
        href = link.get_absolute_href() or link.href
        if href in seen:
            continue
        seen.add(href)
        try:
            child = pystac.read_file(href)
        except Exception as exc:  # noqa: BLE001 - as above, for a sub-catalog
            skipped.append((href, f"unreadable STAC catalog: {exc}"))
            continue
        if isinstance(child, pystac.Catalog):
            more, bad = _walk(child, seen)
            items += more
            skipped += bad
    return items, skipped


def catalog_file(path: Path) -> Path:
    """`path`, or the catalog.json / collection.json of a folder given instead of its catalog file."""
    if path.is_dir():
        return next((path / name for name in ("catalog.json", "collection.json") if (path / name).is_file()), path)
    return path


def read_items(source: Path) -> tuple[list[tuple[pystac.Item, Path]], list[tuple[str, str]]]:
    """(item, folder its relative hrefs start from) of every item of `source`, and the items left out."""
    if not source.is_file():
        raise FileNotFoundError(f"STAC catalog {source} does not exist")
    try:
        document = json.loads(source.read_text())
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("type") in ("Catalog", "Collection"):
        try:
            catalog = pystac.read_file(str(source))
        except Exception as exc:  # noqa: BLE001 - the root itself is unreadable: the run fails, saying why
            raise ValueError(f"unreadable STAC catalog {source}: {exc}") from exc
        items, skipped = _walk(catalog, {str(source)})
        return [(item, Path(item.get_self_href() or source).parent) for item in items], skipped
    found, skipped = [], []
    listed, bad = _listing_items(source)
    for document, where in listed:
        try:
            item = pystac.Item.from_dict(document)
        except Exception as exc:  # noqa: BLE001 - a malformed item is reported, the others go on
            skipped.append((where, f"malformed STAC item: {exc}"))
            continue
        found.append((item, source.parent))
    return found, skipped + bad


def gdal_name(href: str, base: Path) -> str:
    """What GDAL opens for an asset href: a local path (relative hrefs joined to `base`) or a /vsicurl/ URL."""
    parsed = urlparse(href)
    if parsed.scheme in ("http", "https"):
        return f"/vsicurl/{href}"
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:
        raise StackError(f"asset href {href} has an unsupported scheme {parsed.scheme!r}")
    return os.path.normpath(base / href)


def _common_names(asset: pystac.Asset) -> set[str]:
    """The `eo:bands` common names of an asset (STAC 1.0 `eo:bands`, STAC 1.1 `bands` with `eo:common_name`)."""
    bands = asset.extra_fields.get("eo:bands") or []
    names = {b.get("common_name") for b in bands if isinstance(b, dict)}
    names |= {b.get("eo:common_name") for b in asset.extra_fields.get("bands") or [] if isinstance(b, dict)}
    return {name for name in names if name}


def choose_assets(item: pystac.Item, wanted: tuple[str, ...]) -> list[pystac.Asset]:
    """The item's assets for `wanted` (asset keys, or eo:bands common names such as red), in that order."""
    chosen = []
    for key in wanted:
        asset = item.assets.get(key) or next((a for a in item.assets.values() if key in _common_names(a)), None)
        if asset is None:
            raise StackError(f"item has no asset {key!r} (assets: {', '.join(sorted(item.assets)) or 'none'})")
        chosen.append(asset)
    return chosen


def item_facts(item: pystac.Item) -> StacFacts:
    properties = item.properties
    moment = item.datetime.isoformat() if item.datetime is not None else properties.get("start_datetime")
    cloud = properties.get("eo:cloud_cover")
    return StacFacts(
        item=item.id,
        collection=item.collection_id,
        datetime=parse_time(str(moment)) if moment else None,
        cloud_cover=float(cloud) if isinstance(cloud, int | float) and not isinstance(cloud, bool) else None,
        platform=properties.get("platform") or properties.get("constellation"),
        self_href=item.get_self_href(),
    )


def _scene_name(facts: StacFacts) -> str:
    """The VRT's path in the catalog's folder: <collection>/<item>.vrt, names made safe for any file system
    (a short digest of the exact id keeps two ids that differ only in unsafe characters apart)."""
    tag = hashlib.sha256(facts.item.encode()).hexdigest()[:8]
    collection = SAFE_NAME.sub("_", facts.collection or "no-collection")[:100]
    return f"{collection}/{SAFE_NAME.sub('_', facts.item)[:100]}-{tag}.vrt"


def _item_digest(item: pystac.Item) -> str:
    return hashlib.sha256(json.dumps(item.to_dict(transform_hrefs=False), sort_keys=True).encode()).hexdigest()


def write_catalog(source: Path, folder: Path, assets: tuple[str, ...] | None) -> CatalogScenes:
    """Rewrite `folder` as one VRT per usable item of the catalog `source`; remove VRTs of items gone."""
    wanted = tuple(assets) if assets else DEFAULT_ASSETS
    items, skipped = read_items(source)
    result = CatalogScenes(folder, skipped=list(skipped))
    for item, base in items:
        facts = item_facts(item)
        where = facts.self_href or f"{source} item {item.id}"
        name = _scene_name(facts)
        if name in result.scenes:
            result.skipped.append((where, f"STAC item {item.id} appears twice in collection {facts.collection}"))
            continue
        try:
            names = [gdal_name(asset.href, base) for asset in choose_assets(item, wanted)]
            xml = stack_vrt(names, {"STAC_ITEM": item.id, ITEM_DIGEST_KEY: _item_digest(item)})
        except StackError as exc:
            result.skipped.append((where, f"STAC item {item.id}: {exc}"))
            continue
        write_if_changed(folder / name, xml)
        result.scenes[name] = facts
    for stale in sorted(folder.rglob("*.vrt")) if folder.is_dir() else []:
        if stale.relative_to(folder).as_posix() not in result.scenes:
            stale.unlink()
    return result
