"""STAC API search parameters (GET query string or POST body) and the page of items they select.

Order: with the free-text `q`, hits come ranked by relevance, as `POST /v1/search/text` ranks them (the same
searcher: normalisation, encoding, filters before ranking, re-ranking, overlap suppression). Without `q`, items
come in ascending item id order, which is stable while the index version is live. Paging is by offset: the
`next` link carries `token=<offset>`. A ranked search returns at most MAX_RANKED hits in all.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import ValidationError

from service.errors import ServiceError
from service.filters import matching_ids
from service.schemas import SearchFilters
from service.stac.items import StacCatalog, stac_item
from service.state import ServiceState

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MAX_RANKED = 1000
SEARCH_FIELDS = ("q", "bbox", "intersects", "datetime", "collections", "ids", "limit", "token")


def _bad(message: str) -> ServiceError:
    return ServiceError(400, "InvalidParameterValue", message)


RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})", re.IGNORECASE
)


def _instant(text: str) -> datetime | None:
    """An RFC 3339 date-time (`T`/`Z` in either case, any number of fraction digits: Python keeps microseconds)."""
    if text in ("", ".."):
        return None
    match = RFC3339.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        day, clock, fraction, zone = match.groups()
        micro = f".{(fraction or '0')[:6]:0<6}"
        return datetime.fromisoformat(f"{day}T{clock}{micro}{'+00:00' if zone.upper() == 'Z' else zone}")
    except ValueError:
        raise _bad(f"datetime: {text[:40]!r} is not an RFC 3339 date-time such as 2021-06-30T10:00:00Z") from None


def parse_datetime(text: str) -> tuple[datetime | None, datetime | None]:
    """An RFC 3339 instant, or an interval `start/end` with `..` (or nothing) for an open end."""
    if "/" not in text:
        moment = _instant(text)
        if moment is None:
            raise _bad("datetime: give an instant or an interval start/end")
        return moment, moment
    start, _, end = text.partition("/")
    low, high = _instant(start), _instant(end)
    if low is None and high is None:
        raise _bad("datetime: an interval needs at least one closed end")
    if low is not None and high is not None and low > high:
        raise _bad("datetime: the interval's start is after its end")
    return low, high


def _strings(value: Any, name: str) -> list[str]:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _bad(f"{name}: give a list of strings (GET: comma-separated)")
    return value


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _bad(f"{name}: give an integer from {low} to {high}")
    return value


@dataclass(frozen=True)
class StacQuery:
    q: str | None = None
    filters: SearchFilters | None = None
    collections: list[str] | None = None
    ids: list[str] | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def parse(cls, given: dict[str, Any], get: bool) -> StacQuery:
        """Parameters from a GET query string (`get`: strings) or a POST body (JSON types)."""
        unknown = sorted(set(given) - set(SEARCH_FIELDS))
        if unknown:
            raise _bad(f"unknown parameter(s) {', '.join(repr(n[:40]) for n in unknown[:5])}; "
                       f"this search takes {', '.join(SEARCH_FIELDS)}")
        filters: dict[str, Any] = {}
        if given.get("bbox") is not None and given.get("intersects") is not None:
            raise _bad("bbox and intersects: give one of them, not both")
        if (bbox := given.get("bbox")) is not None:
            if isinstance(bbox, str) and get:
                try:
                    bbox = [float(part) for part in bbox.split(",")]
                except ValueError:
                    raise _bad("bbox: give four numbers west,south,east,north") from None
            numbers = isinstance(bbox, list) and all(type(v) in (int, float) for v in bbox)
            if not numbers or len(bbox) not in (4, 6):
                raise _bad("bbox: give four numbers west,south,east,north (or six with heights), EPSG:4326")
            flat = bbox if len(bbox) == 4 else [bbox[0], bbox[1], bbox[3], bbox[4]]  # heights do not filter
            filters["bbox"] = tuple(float(v) for v in flat)
        if (geometry := given.get("intersects")) is not None:
            if isinstance(geometry, str):
                try:
                    geometry = json.loads(geometry)
                except ValueError:
                    raise _bad("intersects: not a GeoJSON geometry") from None
            filters["intersects"] = geometry
        if (when := given.get("datetime")) is not None:
            if not isinstance(when, str):
                raise _bad("datetime: give an RFC 3339 instant or interval as a string")
            low, high = parse_datetime(when)
            filters.update({k: v.isoformat() for k, v in (("time_from", low), ("time_to", high)) if v is not None})
        try:
            checked = SearchFilters.model_validate(filters) if filters else None
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "filter"
            raise _bad(f"{where}: {str(err['msg']).removeprefix('Value error, ')}") from None
        q = given.get("q")
        if isinstance(q, list) and q and all(isinstance(v, str) for v in q):
            q = " ".join(q)
        if q is not None and not isinstance(q, str):
            raise _bad("q: give the free text as a string")
        return cls(
            q=q,
            filters=checked,
            collections=_strings(given["collections"], "collections") if "collections" in given else None,
            ids=_strings(given["ids"], "ids") if "ids" in given else None,
            limit=min(_int(given.get("limit", DEFAULT_LIMIT), "limit", 1, 2**63), MAX_LIMIT),  # larger: capped
            offset=_int(given.get("token", 0), "token", 0, 10**12),
        )


def _requested_ids(query: StacQuery, catalog: StacCatalog) -> np.ndarray | None:
    """Ids that `ids` and `collections` allow (None: any)."""
    allowed = catalog.item_ids(query.collections)
    if query.ids is not None:
        wanted = np.array(sorted({int(i) for i in query.ids if i.isdigit() and int(i) < 2**63}), dtype=np.int64)
        allowed = wanted if allowed is None else np.intersect1d(allowed, wanted)
    return allowed


@dataclass(frozen=True)
class StacPage:
    items: list[dict[str, Any]]
    more: bool  # a next page may hold items
    matched: int | None  # every item the search selects (unknown for a ranked search)


async def run_search(state: ServiceState, query: StacQuery) -> StacPage:
    version = state.live.snapshot()
    catalog = await StacCatalog.of_async(version)
    allowed = _requested_ids(query, catalog)
    end = query.offset + query.limit
    if query.q is not None:
        if query.offset >= MAX_RANKED:
            return StacPage([], False, None)
        k = min(end, MAX_RANKED)
        outcome = await state.searcher.text(
            query.q, k, state.settings.rerank_default, query.filters, True, allowed
        )
        hits = outcome.hits[query.offset : end]
        records = version.images([hit.id for hit in hits])
        items = [
            stac_item(r, catalog.of_record(r), hit.score) for r, hit in zip(records, hits, strict=True) if r is not None
        ]
        return StacPage(items, len(outcome.hits) >= k and k < MAX_RANKED, None)
    if query.filters is not None:
        ids = await asyncio.to_thread(matching_ids, version, query.filters)
    else:
        ids = version.image_ids()
    if allowed is not None:
        ids = np.intersect1d(ids, allowed)
    ids = np.sort(ids)
    records = version.images(ids[query.offset : end])
    return StacPage([stac_item(r, catalog.of_record(r)) for r in records if r is not None], end < len(ids), len(ids))
