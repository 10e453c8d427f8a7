"""The STAC item of a hit, as the service shows it: the item's facts, and its self link only when it is a web
address (a local catalog's item file is a path on the server, which is none of the client's business)."""

from __future__ import annotations

from urllib.parse import urlparse

from index.stac_meta import StacRecord
from service.schemas import StacRef


def stac_ref(record: StacRecord | None) -> StacRef | None:
    if record is None:
        return None
    href = record.self_href
    public = href if href is not None and urlparse(href).scheme in ("http", "https") else None
    return StacRef(
        item=record.item,
        collection=record.collection,
        datetime=record.datetime,
        cloud_cover=record.cloud_cover,
        platform=record.platform,
        self_href=public,
    )
