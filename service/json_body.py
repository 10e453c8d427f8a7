"""JSON request bodies: a size limit enforced while the body streams in, and the Content-Type they need.

Starlette reads a whole body into memory before FastAPI validates it, so without a limit one client can
make the server hold hundreds of megabytes. `JsonBodyLimit` refuses a declared Content-Length over the
limit before reading a byte, and counts the bytes of a chunked body as they arrive, answering 413 as soon
as the count crosses the limit. Image uploads have their own, larger limit (`service.uploads`) and skip it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ServiceError, error_response


class JsonBodyLimit:
    """Pure ASGI middleware: buffer at most `max_bytes` of a request body, then hand it on unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int, exempt_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_paths = exempt_paths

    def _too_large(self) -> Response:
        return error_response(
            413, "body_too_large", f"the request body exceeds the limit of {self.max_bytes} bytes for JSON requests"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see the disconnect
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that returns the already-read messages first, then reads on (e.g. a later disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _is_json(content_type: str | None) -> bool:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


class JsonRoute(APIRoute):
    """A route whose JSON body must be declared as JSON: without the header FastAPI would either guess or
    fail with a message about the body's shape that never mentions the header."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def checked(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            if not _is_json(content_type):
                got = f"got {content_type[:60]!r}" if content_type else "the header is missing"
                message = f"send the body as JSON with the header 'Content-Type: application/json' ({got})"
                raise ServiceError(415, "unsupported_media_type", message)
            return await handler(request)

        return checked
