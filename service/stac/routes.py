"""The STAC API at `/stac`: landing page, conformance, collections, their items, and item search.

Errors carry the STAC API's `code` and `description` beside the service's usual `error` and `message`, so STAC
clients and our own clients both read them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from index.store import IndexVersion
from service.errors import ServiceError, error_responses, redact_paths
from service.links import absolute
from service.stac.items import STAC_VERSION, CollectionInfo, StacCatalog, collection_document, collection_of, stac_item
from service.stac.query import StacQuery, run_search
from service.state import ServiceState

GEOJSON = "application/geo+json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.1"  # FastAPI writes OpenAPI 3.1


def _documented(media_type: str, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses`: a 200 of `media_type` and the error statuses (in the STAC error shape)."""
    return {200: {"content": {media_type: {"schema": {"type": "object"}}}}, **error_responses(*statuses)}
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0-rc.1/item-search#free-text",
    "https://api.stacspec.org/v1.0.0-rc.1/ogcapi-features#free-text",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
DESCRIPTION = (
    "Remote-sensing images and scene tiles indexed for text search. Item search takes the free-text parameter "
    "`q`: its hits come in ranked order, most relevant first (not date order), with the score in the property "
    "`posapl:score`. Without `q`, items come in ascending item id order. Each item's `data` asset is the image, "
    "or a scene tile's window as a GeoTIFF."
)


def stac_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "description": message, "error": code, "message": message}, status_code=status
    )


class StacRoute(APIRoute):
    """Refusals in the STAC API's error shape (code, description) as well as ours (error, message)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answered(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                return stac_error(exc.status, exc.code, redact_paths(exc.message))
            except RequestValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err.get("loc", ())) or "request"
                return stac_error(400, "InvalidParameterValue", f"{where}: {err.get('msg', 'invalid')}")

        return answered


router = APIRouter(prefix="/stac", tags=["stac"], route_class=StacRoute)


def _state(request: Request) -> ServiceState:
    state = getattr(request.app.state, "service", None)
    if state is None:
        raise ServiceError(503, "NotReady", "the service is still loading its index")
    return state


def _link(rel: str, route: str, kind: str = "application/json", **extra: Any) -> dict[str, Any]:
    return {"rel": rel, "href": absolute(route), "type": kind, **extra}


@router.get("", summary="STAC landing page", responses=_documented("application/json", 503))
async def landing(request: Request) -> JSONResponse:
    version = _state(request).live.snapshot()
    catalog = await StacCatalog.of_async(version)
    children = [_link("child", f"/stac/collections/{name}") for name in catalog.collections]
    return JSONResponse({
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "posapl",
        "title": "POSAPL remote-sensing search",
        "description": DESCRIPTION,
        "conformsTo": CONFORMANCE,
        "links": [
            _link("self", "/stac"),
            _link("root", "/stac"),
            _link("conformance", "/stac/conformance"),
            _link("data", "/stac/collections"),
            _link("search", "/stac/search", GEOJSON, method="GET"),
            _link("search", "/stac/search", GEOJSON, method="POST"),
            _link("service-desc", "/stac/api", OPENAPI),
            _link("service-doc", "/docs", "text/html"),
            *children,
        ],
    })


@router.get(
    "/api",
    responses=_documented(OPENAPI),
    summary="The OpenAPI description of the service, as the STAC `service-desc` link types it",
)
async def service_desc(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi(), media_type=OPENAPI)


@router.get("/conformance", summary="STAC and OGC API conformance classes", responses=_documented("application/json"))
async def conformance() -> JSONResponse:
    return JSONResponse({"conformsTo": CONFORMANCE})


@router.get(
    "/collections",
    responses=_documented("application/json", 503),
    summary="Collections: one per STAC collection ingested, `archive` for folders",
)
async def collections(request: Request) -> JSONResponse:
    version = _state(request).live.snapshot()
    catalog = await StacCatalog.of_async(version)
    documents = [collection_document(info, version) for info in catalog.collections.values()]
    links = [_link("self", "/stac/collections"), _link("root", "/stac"), _link("parent", "/stac")]
    return JSONResponse({"collections": documents, "links": links})


async def _collection(request: Request, collection_id: str) -> tuple[IndexVersion, CollectionInfo]:
    version = _state(request).live.snapshot()
    info = (await StacCatalog.of_async(version)).collections.get(collection_id)
    if info is None:
        raise ServiceError(404, "NotFound", f"no collection {collection_id[:60]!r}")
    return version, info


@router.get(
    "/collections/{collection_id}", summary="One collection", responses=_documented("application/json", 404, 503)
)
async def collection(request: Request, collection_id: str) -> JSONResponse:
    version, info = await _collection(request, collection_id)
    return JSONResponse(collection_document(info, version))


@router.get(
    "/collections/{collection_id}/items/{item_id}", summary="One item", responses=_documented(GEOJSON, 404, 503)
)
async def item(request: Request, collection_id: str, item_id: str) -> JSONResponse:
    version, info = await _collection(request, collection_id)
    catalog = await StacCatalog.of_async(version)
    record = None
    if item_id.isdigit() and int(item_id) < 2**63:
        record = version.images([int(item_id)])[0]
    if record is None or collection_of(record, catalog.of_record(record)) != info.id:
        raise ServiceError(404, "NotFound", f"no item {item_id[:40]!r} in collection {collection_id[:60]!r}")
    return JSONResponse(stac_item(record, catalog.of_record(record)), media_type=GEOJSON)


def _get_params(request: Request) -> dict[str, str]:
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ServiceError(400, "InvalidParameterValue", f"parameter {repeated[0][:40]!r} is given more than once")
    return dict(request.query_params)


async def _page(request: Request, query: StacQuery, route: str, given: dict[str, Any], post: bool) -> JSONResponse:
    page = await run_search(_state(request), query)
    links = [_link("self", route, GEOJSON), _link("root", "/stac")]
    if page.more:
        following = {**given, "token": query.offset + query.limit}
        if post:
            links.append(_link("next", route, GEOJSON, method="POST", body=following, merge=False))
        else:
            links.append({"rel": "next", "href": f"{absolute(route)}?{urlencode(following)}", "type": GEOJSON})
    body: dict[str, Any] = {"type": "FeatureCollection", "features": page.items, "links": links,
                            "numberReturned": len(page.items)}
    if page.matched is not None:
        body["numberMatched"] = page.matched
    return JSONResponse(body, media_type=GEOJSON)


@router.get(
    "/collections/{collection_id}/items",
    responses=_documented(GEOJSON, 400, 404, 422, 503),
    summary="The items of a collection, a page at a time",
)
async def collection_items(request: Request, collection_id: str) -> JSONResponse:
    await _collection(request, collection_id)
    given = _get_params(request)
    allowed = {"q", "bbox", "datetime", "limit", "token"}
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ServiceError(400, "InvalidParameterValue", f"unknown parameter {unknown[0][:40]!r}; "
                           f"this endpoint takes {', '.join(sorted(allowed))}")
    query = StacQuery.parse({**given, "collections": [collection_id]}, get=True)
    return await _page(request, query, f"/stac/collections/{collection_id}/items", given, post=False)


@router.get(
    "/search",
    responses=_documented(GEOJSON, 400, 422, 503),
    summary="Item search (free text `q`, bbox, intersects, datetime, collections, ids)",
)
async def search_get(request: Request) -> JSONResponse:
    given = _get_params(request)
    return await _page(request, StacQuery.parse(given, get=True), "/stac/search", given, post=False)


@router.post("/search", summary="Item search with a JSON body", responses=_documented(GEOJSON, 400, 413, 422, 503))
async def search_post(request: Request) -> JSONResponse:
    try:
        given = json.loads(await request.body() or b"{}")
    except ValueError:
        raise ServiceError(400, "InvalidParameterValue", "the body is not valid JSON") from None
    if not isinstance(given, dict):
        raise ServiceError(400, "InvalidParameterValue", "the body must be a JSON object")
    return await _page(request, StacQuery.parse(given, get=False), "/stac/search", given, post=True)
