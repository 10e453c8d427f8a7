"""Security headers on every response: a Content-Security-Policy, `nosniff`, and no framing.

Archive strings (file names, captions) reach the page, so the page must not be able to run script that it did
not load from this server: the policy allows scripts, styles, images and requests from the same origin only,
plus the operator's map tile server (`POSAPL_MAP_TILES`) for images. The interactive API docs (`/docs`,
`/redoc`) are FastAPI's pages, which load Swagger UI / ReDoc from a CDN and start them with one inline
script; they get their own policy that allows that CDN and exactly those inline scripts, by hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_FONTS = "https://fonts.googleapis.com"  # ReDoc's stylesheet of web fonts
DOCS_PATHS = frozenset({"/docs", "/redoc"})
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def tile_origin(template: str) -> str:
    """The CSP source of a tile URL template: its scheme and host, `{s}` subdomains as a wildcard."""
    parts = urlsplit(template)
    return f"{parts.scheme}://{parts.netloc.replace('{s}', '*')}"


def page_policy(tiles: str | None = None) -> str:
    """The policy of the page and of every API response: same origin only, nothing inline."""
    images = "'self' data: blob:" + (f" {tile_origin(tiles)}" if tiles else "")
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def docs_policy(inline_scripts: list[bytes]) -> str:
    """The API docs' policy: their CDN, and only the inline scripts this response holds (by SHA-256)."""
    hashes = "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in inline_scripts)
    return (
        f"default-src 'self'; script-src 'self' {DOCS_CDN}{hashes}; "
        f"style-src 'self' {DOCS_CDN} {DOCS_FONTS} 'unsafe-inline'; "
        f"img-src 'self' data: https://fastapi.tiangolo.com {DOCS_CDN}; font-src 'self' https:; "
        "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def _set_headers(message: Message, policy: str) -> None:
    headers = MutableHeaders(scope=message)
    headers["Content-Security-Policy"] = policy
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"  # frame-ancestors for browsers that predate CSP 2
    headers["Referrer-Policy"] = "no-referrer"


class SecurityHeaders:
    """Pure ASGI middleware that adds the headers to each response start (streamed bodies stay streamed)."""

    def __init__(self, app: ASGIApp, tiles: str | None = None) -> None:
        self.app = app
        self.policy = page_policy(tiles)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in DOCS_PATHS:
            await self._docs(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _set_headers(message, self.policy)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold back the (small) docs page until its body is known, to hash its inline scripts."""
        messages: list[Message] = []

        async def collect(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, collect)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        for message in messages:
            if message["type"] == "http.response.start":
                _set_headers(message, docs_policy(INLINE_SCRIPT.findall(body)))
            await send(message)
