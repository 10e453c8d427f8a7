"""Operator endpoints, behind a bearer token; with no token configured they do not exist."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import ServiceError, error_responses
from service.schemas import ReloadResult
from service.state import ServiceState, get_state

router = APIRouter(prefix="/v1/admin", tags=["admin"])
State = Annotated[ServiceState, Depends(get_state)]
bearer = HTTPBearer(auto_error=False, description="the admin token from the server settings")


def require_admin(state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """Constant-time token check, so response timing does not reveal how much of a guess was right."""
    token = state.settings.admin_token
    if token is None:
        raise ServiceError(404, "admin_disabled", "admin endpoints are disabled: no admin token is configured")
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ServiceError(401, "unauthorized", "send 'Authorization: Bearer <admin token>'", unauthorized)
    if not hmac.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode()):
        raise ServiceError(401, "unauthorized", "the admin token is wrong", unauthorized)


@router.post(
    "/reload",
    response_model=ReloadResult,
    responses=error_responses(401, 404, 409, 503),
    dependencies=[Depends(require_admin)],
    summary="Switch to the version CURRENT names now",
)
async def reload_index(state: State) -> ReloadResult:
    """Opens and verifies the published version and swaps it in; a refused version keeps the old one serving."""
    outcome = await state.live.reload(force=True)
    if outcome.refused:
        raise ServiceError(409, "version_refused", outcome.message)
    if outcome.version is None:
        raise ServiceError(503, "index_unavailable", outcome.message)
    return ReloadResult(
        changed=outcome.changed,
        index_version=outcome.version,
        previous_version=outcome.previous,
        message=outcome.message,
    )
