"""Requests are read strictly: a query parameter an endpoint does not read is refused by name, not ignored.

A misspelt or unsupported parameter (a filter that only POST takes, `?size=64` on a thumbnail) would
otherwise be dropped silently and the client would believe it had been applied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from service.errors import ServiceError


def check_query_params(request: Request, allowed: tuple[str, ...], hint: str = "") -> None:
    """422 for a parameter given twice or not in `allowed`, naming it (and what the endpoint takes)."""
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ServiceError(422, "repeated_parameter", f"query parameter {repeated[0][:40]!r} is given more than once")
    unknown = sorted({name for name in names if name not in allowed})
    if unknown:
        listed = ", ".join(repr(name[:40]) for name in unknown[:5])
        takes = f"takes {', '.join(allowed)}" if allowed else "takes no query parameters"
        raise ServiceError(
            422, "unknown_parameter", f"unknown query parameter(s) {listed}; {request.url.path} {takes}{hint}"
        )


def only_query_params(*allowed: str, hint: str = "") -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that applies `check_query_params` with these names (`async`: a cheap check, run on
    the event loop rather than in FastAPI's thread pool)."""

    async def dependency(request: Request) -> None:
        check_query_params(request, allowed, hint)

    return dependency
