"""One JSON error shape for every failure, so clients (and the OpenAPI schema) see a single contract.

Validation errors from FastAPI, HTTP errors from Starlette (404/405) and the service's own refusals all
become `{"error": <code>, "message": <sentence>, "details": [...]?}`; nothing reaches the client as a 500
page or a stack trace. Messages never carry a server path: exception texts from deep inside (Pillow, the
index store) often name files, so every message passes through `redact_paths` on its way out.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """What every 4xx/5xx response carries."""

    error: str
    message: str
    details: list[dict[str, Any]] | None = None


class ServiceError(Exception):
    """A refusal with an HTTP status, a stable machine-readable code and a human sentence."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


SERVER_PATH = "<server path>"
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/-])/([^\s/'\"]+)(?:/[^\s'\"]*)?")
_FILESYSTEM_TOP = frozenset(os.listdir("/"))


def redact_paths(text: str, hidden: Iterable[Path | str] = ()) -> str:
    """`text` with the given server folders and any absolute path on this machine's file system replaced.

    An absolute path is recognised by its first component existing at the file system root (`/work/...`,
    `/tmp/...`), so API routes quoted in messages (`/v1/search/text`) stay readable.
    """
    for folder in sorted({str(p) for p in hidden if str(p) not in ("", ".")}, key=len, reverse=True):
        text = text.replace(folder, SERVER_PATH)
    return _ABSOLUTE_PATH.sub(lambda m: SERVER_PATH if m.group(1) in _FILESYSTEM_TOP else m.group(0), text)


def _body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return ErrorBody(error=code, message=message, details=details).model_dump(exclude_none=True)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape, for code outside FastAPI's exception handlers (e.g. ASGI middleware)."""
    return JSONResponse(_body(code, message), status_code=status, headers=headers)


def _what_to_fix(err: dict[str, Any]) -> str:
    """Pydantic's sentence, plus how to fix the usual mistakes of hand-written JSON (quoted numbers, booleans)."""
    message = str(err.get("msg", "invalid"))
    kind, value = err.get("type"), err.get("input")
    if kind in ("int_type", "float_type"):
        wanted = "an integer" if kind == "int_type" else "a number"
        if isinstance(value, bool):
            return f"must be {wanted}, got the boolean {json.dumps(value)}"
        if isinstance(value, str):
            return f"must be {wanted} written without quotes, got the string {json.dumps(value[:20])}"
        if kind == "int_type" and isinstance(value, float):
            return f"must be an integer, got {value!r}"
    if kind == "missing" and tuple(err.get("loc", ())) == ("body",):
        return "the request has no body: send a JSON object such as {\"query\": \"a river\"}"
    return message


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {_what_to_fix(err)}")
    return "; ".join(parts)


def _json_syntax_error(errors: list[dict[str, Any]]) -> str | None:
    """The sentence for a body that is not JSON at all (a 400: the request is malformed, not invalid)."""
    for err in errors:
        if err.get("type") == "json_invalid":
            loc = err.get("loc", ())
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            reason = (err.get("ctx") or {}).get("error", "JSON decode error")
            return f"the body is not valid JSON: {reason}{where}; send a JSON object such as {{\"query\": \"a river\"}}"
    return None


def _plain_details(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation details without the raw input/context, which may hold undecodable bytes or huge strings."""
    return [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in errors
    ]


def install_error_handlers(app: FastAPI, hidden: Iterable[Path | str] = ()) -> None:
    """Route every exception type the app can raise to the one error shape; `hidden` are server folders
    (e.g. the index root, which may be relative) that no message may show."""
    hidden = tuple(hidden)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.code, redact_paths(exc.message, hidden), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        raw = list(exc.errors())
        syntax = _json_syntax_error(raw)
        if syntax is not None:
            return error_response(400, "invalid_json", syntax)
        errors = jsonable_encoder(_plain_details(raw))
        return JSONResponse(_body("invalid_request", _validation_message(raw), errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = redact_paths(str(exc.detail), hidden)
        if exc.status_code == 400:
            message += " (send a JSON object encoded as UTF-8)"
        return JSONResponse(_body(code, message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(_body("internal_error", "internal error; see the server log"), status_code=500)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting the error shape for the given statuses."""
    descriptions = {
        400: "Bad request",
        401: "Missing or wrong bearer token",
        404: "Unknown id or endpoint disabled",
        409: "Index version refused",
        413: "Upload, image or JSON body too large",
        415: "Not a supported image, or a JSON body without 'Content-Type: application/json'",
        422: "Invalid request",
        503: "No index or model loaded",
    }
    return {status: {"model": ErrorBody, "description": descriptions.get(status, "Error")} for status in statuses}


def image_responses(description: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` of an endpoint that answers with the bytes of an image (of any type), and its errors."""
    return {
        200: {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}, "description": description},
        **error_responses(404, 422, 503),
    }
