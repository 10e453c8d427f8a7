"""The state database as the service reaches it: one engine per app, API keys, and 503 when it is down.

Every call runs in a worker thread and turns a database failure (unreachable server, SQLite locked beyond
its busy timeout) into 503 `state_unavailable`, so the search endpoints, which never touch it, keep working.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, TypeVar

import sqlalchemy as sa
from fastapi import Depends, Request

from monitor.db import StateUnavailableError, open_engine
from monitor.keys import owner_of
from monitor.settings import MonitorSettings
from service.errors import ServiceError
from service.settings import ServiceSettings

T = TypeVar("T")
UNAVAILABLE = "the saved-search database is unavailable; search still works, try this again later"


def monitor_settings(settings: ServiceSettings) -> MonitorSettings:
    return MonitorSettings(
        root=settings.index_root, state_db=settings.state_db, webhook_allow_private=settings.webhook_allow_private,
        feedback_background=settings.feedback_background,
    )


async def call(function: Callable[..., T], *args: object) -> T:
    """Run a blocking state-database call off the event loop; 503 when the database fails."""
    try:
        return await asyncio.to_thread(function, *args)
    except (StateUnavailableError, sa.exc.OperationalError, sa.exc.InterfaceError):
        raise ServiceError(503, "state_unavailable", UNAVAILABLE) from None


async def engine(request: Request) -> sa.Engine:
    """The app's engine, opened (and migrated) on first use rather than at startup: a database that is down
    when the server starts must not keep search from starting."""
    app_state = request.app.state
    if getattr(app_state, "state_engine", None) is None:
        settings = request.app.state.service.settings
        app_state.state_engine = await call(open_engine, monitor_settings(settings))
    return app_state.state_engine


Engine = Annotated[sa.Engine, Depends(engine)]


def presented_key(request: Request) -> str | None:
    """`Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


async def key_owner(request: Request, db: Engine) -> int:
    """The id of the caller's key; 401 without a valid one."""
    key = presented_key(request)
    owner = None if key is None else await call(owner_of, db, key)
    if owner is None:
        raise ServiceError(
            401,
            "unauthorized",
            "a valid API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY` "
            "(create one with `posapl keys add NAME`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return owner


Owner = Annotated[int, Depends(key_owner)]


async def key_if_required(request: Request) -> None:
    """With POSAPL_REQUIRE_KEY=true every search endpoint needs a valid key too; otherwise search stays open
    and the state database is not touched (so it keeps working while that database is down)."""
    if request.app.state.service.settings.require_key:
        await key_owner(request, await engine(request))
