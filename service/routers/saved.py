"""Saved searches: /v1/searches (owned by an API key), their matches, and an Atom feed per search.

The feed lives at a capability URL (/v1/feeds/{token}.atom): the unguessable token is the access right, so
feed readers that cannot send headers can subscribe; deleting the search revokes it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from monitor import searches as saved
from monitor.recompute import VECTOR_FIELDS, missing_labels
from monitor.searches import SavedSearch
from monitor.webhooks import check_url
from service.errors import ServiceError, error_responses
from service.geojson import RESPONSE_DOC, feature_collection, wants_geojson
from service.json_body import JsonRoute
from service.links import absolute
from service.routers.search import Format
from service.saved import vectors
from service.saved.access import Engine, Owner, call
from service.saved.feed import MEDIA_TYPE, atom_feed
from service.saved.schemas import (
    MatchList,
    MatchOut,
    SavedSearchCreate,
    SavedSearchList,
    SavedSearchOut,
    SavedSearchPatch,
)
from service.search import image_hits
from service.state import ServiceState, get_state

router = APIRouter(tags=["saved searches"], route_class=JsonRoute)
State = Annotated[ServiceState, Depends(get_state)]
SearchId = Annotated[int, Path(ge=1, le=2**31 - 1, description="id of one of this key's saved searches")]


def _out(state: ServiceState, search: SavedSearch) -> SavedSearchOut:
    version = state.searcher.live.snapshot()
    return SavedSearchOut(
        id=search.id, name=search.name, query=search.query, positive_ids=search.positive_ids,
        negative_ids=search.negative_ids, method=search.method, positive_weight=search.weights["positive"],
        negative_weight=search.weights["negative"], filters=search.filters, threshold=search.threshold,
        feed_url=absolute(f"/v1/feeds/{search.feed_token}.atom"), webhook_url=search.webhook_url,
        model_fingerprint=search.fingerprint, last_version=search.last_version,
        missing_labels=missing_labels(version, search.positive_ids + search.negative_ids),
        created=search.created, updated=search.updated,
    )


def _check_webhook(state: ServiceState, url: str | None, secret: str | None) -> None:
    if url is None:
        return
    if secret is None:
        raise ServiceError(422, "missing_secret", "a webhook_url needs a webhook_secret (16+ characters) to sign with")
    try:
        check_url(url, state.settings.webhook_allow_private)
    except ValueError as exc:
        raise ServiceError(422, "bad_webhook_url", str(exc)) from None


async def _owned(db: Any, owner: int, search_id: int) -> SavedSearch:
    search = await call(saved.get, db, owner, search_id)
    if search is None:
        raise ServiceError(404, "unknown_search", f"no saved search {search_id} among this key's searches")
    return search


@router.post(
    "/v1/searches", response_model=SavedSearchOut, status_code=201, responses=error_responses(400, 401, 422, 503),
    summary="Save a search that watches new imagery",
)
async def create_search(body: SavedSearchCreate, state: State, db: Engine, owner: Owner) -> SavedSearchOut:
    """New items of every later index version are matched when their score reaches `threshold`; the items
    already indexed are not (search them with /v1/search/feedback)."""
    _check_webhook(state, body.webhook_url, body.webhook_secret)
    fields: dict[str, Any] = body.model_dump(exclude={"positive_weight", "negative_weight", "filters"})
    fields["weights"] = {"positive": body.positive_weight, "negative": body.negative_weight}
    fields["filters"] = None if body.filters is None else body.filters.model_dump(mode="json", exclude_unset=True)
    computed = await vectors.compute(state.searcher, fields, strict=True)
    fields.update(
        fingerprint=computed.fingerprint, vector=computed.vector, intercept=computed.intercept,
        last_version=computed.version,
    )
    search = await call(saved.create, db, owner, fields)
    return await asyncio.to_thread(_out, state, search)


@router.get("/v1/searches", response_model=SavedSearchList, responses=error_responses(401, 503))
async def list_searches(state: State, db: Engine, owner: Owner) -> SavedSearchList:
    found = [await vectors.fresh(state.searcher, db, s) for s in await call(saved.list_for, db, owner)]
    return SavedSearchList(searches=[await asyncio.to_thread(_out, state, s) for s in found])


@router.get("/v1/searches/{search_id}", response_model=SavedSearchOut, responses=error_responses(401, 404, 503))
async def get_search(search_id: SearchId, state: State, db: Engine, owner: Owner) -> SavedSearchOut:
    search = await vectors.fresh(state.searcher, db, await _owned(db, owner, search_id))
    return await asyncio.to_thread(_out, state, search)


@router.patch(
    "/v1/searches/{search_id}", response_model=SavedSearchOut, responses=error_responses(400, 401, 404, 422, 503)
)
async def patch_search(
    search_id: SearchId, body: SavedSearchPatch, state: State, db: Engine, owner: Owner
) -> SavedSearchOut:
    search = await _owned(db, owner, search_id)
    given = body.model_dump(exclude_unset=True, exclude={"positive_weight", "negative_weight", "filters"})
    if "filters" in body.model_fields_set:
        given["filters"] = None if body.filters is None else body.filters.model_dump(mode="json", exclude_unset=True)
    weights = dict(search.weights)
    for side in ("positive", "negative"):
        if f"{side}_weight" in body.model_fields_set:
            weights[side] = getattr(body, f"{side}_weight")
    given["weights"] = weights
    _check_webhook(
        state, given.get("webhook_url", search.webhook_url), given.get("webhook_secret", search.webhook_secret)
    )
    fields = {name: given.get(name, getattr(search, name)) for name in VECTOR_FIELDS}
    if fields != {name: getattr(search, name) for name in VECTOR_FIELDS}:
        computed = await vectors.compute(state.searcher, fields, strict=True)
        given.update(fingerprint=computed.fingerprint, vector=computed.vector, intercept=computed.intercept)
    updated = await call(saved.update, db, owner, search_id, given)
    return await asyncio.to_thread(_out, state, updated)


@router.delete("/v1/searches/{search_id}", status_code=204, responses=error_responses(401, 404, 503))
async def delete_search(search_id: SearchId, db: Engine, owner: Owner) -> Response:
    if not await call(saved.delete, db, owner, search_id):
        raise ServiceError(404, "unknown_search", f"no saved search {search_id} among this key's searches")
    return Response(status_code=204)


@router.get(
    "/v1/searches/{search_id}/matches", response_model=MatchList,
    responses={**error_responses(401, 404, 503), **RESPONSE_DOC},
)
async def search_matches(
    search_id: SearchId, state: State, db: Engine, owner: Owner, request: Request,
    since: Annotated[datetime | None, Query(description="only matches found after this instant (ISO-8601)")] = None,
    format: Format = None,
) -> MatchList | Response:
    """Matches oldest first (at most 1,000 per call: page with `since` = the last found_at)."""
    geojson = wants_geojson(request, format)
    await _owned(db, owner, search_id)
    found = await call(saved.list_matches, db, search_id, since)
    version = state.searcher.live.snapshot()
    ids = np.array([m["item_id"] for m in found], np.int64)
    scores = np.array([m["score"] for m in found], np.float32)
    hits = await asyncio.to_thread(image_hits, version, ids, scores)
    if geojson:
        return feature_collection(hits)
    return MatchList(search_id=search_id, matches=[MatchOut(**m) for m in found], items=hits)


@router.get(
    "/v1/feeds/{token}.atom", response_class=Response,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "Atom feed"}, **error_responses(404, 503)},
    summary="Atom feed of a saved search's matches (the URL is the credential)",
)
async def feed(token: str, db: Engine) -> Response:
    search = await call(saved.by_feed_token, db, token)
    if search is None:
        raise ServiceError(404, "unknown_feed", "no feed at this address")
    found = await call(saved.list_matches, db, search.id, None)
    body = atom_feed(search.id, search.name, absolute(f"/v1/feeds/{token}.atom"), absolute(""), found)
    return Response(body, media_type=MEDIA_TYPE)
