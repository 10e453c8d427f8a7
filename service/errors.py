"""One JSON error shape for every failure, so clients (and the OpenAPI schema) see a single contract.

Validation errors from FastAPI, HTTP errors from Starlette (404/405) and the service's own refusals all
become `{"error": <code>, "message": <sentence>, "details": [...]?}`; nothing reaches the client as a 500
page or a stack trace.
"""

from __future__ import annotations

import logging
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


def _body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return ErrorBody(error=code, message=message, details=details).model_dump(exclude_none=True)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _plain_details(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation details without the raw input/context, which may hold undecodable bytes or huge strings."""
    return [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in errors
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception type the app can raise to the one error shape."""

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(_plain_details(list(exc.errors())))
        return JSONResponse(_body("invalid_request", _validation_message(errors), errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
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
        413: "Upload or image too large",
        415: "Not a supported image",
        422: "Invalid request",
        503: "No index or model loaded",
    }
    return {status: {"model": ErrorBody, "description": descriptions.get(status, "Error")} for status in statuses}
