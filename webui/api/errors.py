"""Map typed errors to A1111's JSON error body: {error, detail, body, errors} with a 4xx/5xx status."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from webui.errors import EaselError

log = logging.getLogger("easel.api")


_HTTP_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    422: "InvalidRequest",
}


def json_safe(value: object, depth: int = 0) -> object:
    """`value` as plain JSON: NaN and ±Infinity (which strict JSON can't hold) become strings, anything else that
    isn't JSON becomes its str(). Validation errors echo the offending input, which may be such a number."""
    if depth > 32:
        return "..."
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # 'nan', 'inf', '-inf'
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    return str(value)


def error_body(error: str, detail: str, *, body: object = None, errors: object = None) -> dict:
    return {"error": error, "detail": detail, "body": body, "errors": errors}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EaselError)
    async def _easel(request: Request, exc: EaselError):
        return JSONResponse(
            error_body(type(exc).__name__, exc.message, errors=exc.detail if exc.detail != exc.message else None),
            status_code=exc.status,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errs: Any = json_safe(exc.errors())
        fields = ", ".join(".".join(str(p) for p in e.get("loc", [])[1:]) or "body" for e in errs)
        first = errs[0].get("msg", "invalid") if errs else "invalid"
        return JSONResponse(
            error_body("RequestValidationError", f"invalid field(s) {fields}: {first}", errors=errs), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        name = _HTTP_NAMES.get(exc.status_code, "HTTPException")
        return JSONResponse(
            error_body(name, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(error_body(type(exc).__name__, str(exc) or "internal error"), status_code=500)
