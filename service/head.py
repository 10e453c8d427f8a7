"""HEAD on every GET route (RFC 9110 §9.3.2): the headers GET would send, without the body.

FastAPI registers only the methods a route names, so a HEAD (what link checkers, caches and `curl -I` send)
got 405 on every GET endpoint. This middleware answers it by running the GET and dropping the body; the
headers, Content-Length included, are exactly those of the GET. A route without GET still answers 405.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """Pure ASGI middleware: HEAD runs as GET, and only the response's start (status and headers) goes out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
