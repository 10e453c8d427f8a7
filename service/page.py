"""The web page: its HTML, its icon, and the few server settings the page script needs.

The page's scripts are static files (no inline script, so the Content-Security-Policy can forbid it); what they
need from the server's configuration, such as the map's tile layer, they read from `/page-config.json`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent / "static"
DAY = "public, max-age=86400"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def web_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon", headers={"Cache-Control": DAY})


@router.get("/page-config.json")
async def page_config(request: Request) -> dict[str, str | None]:
    """`map_tiles`: the basemap URL template (POSAPL_MAP_TILES), or null for the plain offline map."""
    return {"map_tiles": request.app.state.page_tiles}
