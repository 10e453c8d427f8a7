"""Absolute links and unambiguous archive paths in everything the API hands out.

A URL in a JSON or GeoJSON answer has to work where the answer ends up: in a script, a GIS layer, a spreadsheet,
a mail. So every link is absolute, on the configured public URL (`POSAPL_PUBLIC_URL`: the address clients reach
behind a proxy) or else on the base URL of the request being answered. The base is request-scoped: the
`PublicBase` middleware sets it once per request, so every pipeline that builds hits (text search, image
search, and any later one) makes the same links without threading the request through its code.

Paths: an item's path is relative to the archive folder it was indexed from. When a store has several folders
the same relative path can exist in more than one, so the path then starts with the folder's name (the
shortest trailing part of its location that no other folder shares: `images`, or `a/images` beside
`b/images`). A store with one folder keeps the plain relative path.
"""

from __future__ import annotations

from collections import Counter
from contextvars import ContextVar
from functools import lru_cache
from pathlib import PurePosixPath

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

_base: ContextVar[str] = ContextVar("public_base", default="")


class PublicBase:
    """ASGI middleware: the base URL of this request's links (the setting, else the request's own base URL)."""

    def __init__(self, app: ASGIApp, public_url: str | None = None) -> None:
        self.app = app
        self.public_url = public_url.rstrip("/") if public_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _base.set(self.public_url or str(Request(scope).base_url).rstrip("/"))
        try:
            await self.app(scope, receive, send)
        finally:
            _base.reset(token)


def absolute(route: str) -> str:
    """`route` (e.g. `/v1/images/1`) as an absolute URL for the client of the current request."""
    return _base.get() + route


def image_links(image_id: int) -> dict[str, str]:
    """The original (or, for a tile, its window as GeoTIFF), thumbnail and browser view of an item."""
    return {
        "image_url": absolute(f"/v1/images/{image_id}"),
        "thumbnail_url": absolute(f"/v1/images/{image_id}/thumbnail"),
        "view_url": absolute(f"/v1/images/{image_id}/view"),
    }


def scene_links(scene_id: int) -> dict[str, str]:
    """The scene's metadata, its whole file and its overview."""
    return {
        "url": absolute(f"/v1/scenes/{scene_id}"),
        "image_url": absolute(f"/v1/scenes/{scene_id}/original"),
        "overview_url": absolute(f"/v1/scenes/{scene_id}/overview"),
    }


@lru_cache(maxsize=16)
def folder_labels(sources: tuple[str, ...]) -> tuple[str, ...]:
    """The name of each archive folder in paths: "" for a store with one folder (paths stay as indexed), else
    the shortest trailing part of the folder's location that no other folder shares."""
    if len(sources) <= 1:
        return ("",) * len(sources)
    parts = [tuple(p for p in PurePosixPath(source).parts if p != "/") or ("root",) for source in sources]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(p[-d:]) for p, d in zip(parts, depth, strict=True)]
        counts = Counter(labels)
        clashing = [i for i, label in enumerate(labels) if counts[label] > 1 and depth[i] < len(parts[i])]
        if not clashing:
            break
        for i in clashing:
            depth[i] += 1
    counts = Counter(labels)  # only a folder listed twice still clashes: number its entries
    return tuple(label if counts[label] == 1 else f"{label}#{i + 1}" for i, label in enumerate(labels))


def archive_path(sources: list[str], source: int, path: str) -> str:
    """The path clients see for the file `path` of archive folder number `source` (see the module docstring)."""
    label = folder_labels(tuple(sources))[source]
    return f"{label}/{path}" if label else path
