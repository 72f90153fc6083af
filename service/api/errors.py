"""One table mapping domain errors to HTTP statuses, and the handlers that apply it.

Every error answer is JSON ``{"detail": "<what is wrong>", "error": "<code>"}``. Bad input is a 4xx
that names the field, never a 500. Conventions: a body that is not JSON is 400; a JSON body with a
wrong field (including an unknown class id inside the body) is 422; an unknown class in the URL
path is 404, and so is removing a label the bank does not have; a body over the limit is 413; a
write without a valid token is 401 (403 when writes are disabled); re-indexing a video without
``"overwrite": true`` is 409, and so is a label by reference whose embedding is not kept; a body
that is not sent as ``application/json`` is 415; a shared store that cannot be reached is 503.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.schemas import error_body
from service.bank import NotInBank
from service.decode import InputError
from service.review import NotKept
from service.scorer import UnknownClassError
from service.stores.base import StoreUnavailable, VideoExists

log = logging.getLogger("ccrl.api")


class ApiError(Exception):
    """An error raised by the routes themselves, with its status and code."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class MalformedBody(ApiError):
    status, code = 400, "malformed_json"


class BodyTooLarge(ApiError):
    status, code = 413, "body_too_large"


class ClassNotFound(ApiError):
    status, code = 404, "unknown_class"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class WritesDisabled(ApiError):
    status, code = 403, "writes_disabled"


class NotReady(ApiError):
    status, code = 503, "not_ready"


ERROR_TABLE: tuple[tuple[type[Exception], int, str], ...] = (
    (InputError, 422, "invalid_input"),
    (UnknownClassError, 422, "unknown_class"),
    (StoreUnavailable, 503, "store_unavailable"),
    (VideoExists, 409, "already_indexed"),
    (NotInBank, 404, "label_not_found"),
    (NotKept, 409, "embedding_not_kept"),
)
"""Domain errors of the runtime -> (status, code). :class:`ApiError` subclasses carry their own."""


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, detail), status_code=status, headers=headers)


def _format_validation(errors: list[Any]) -> str:
    """Pydantic / FastAPI errors as ``field.path: message; ...``."""
    parts = []
    for e in errors[:5]:
        where = _where([p for p in e.get("loc", ()) if p not in ("body",)])
        parts.append(f"{where}: {e.get('msg', 'invalid')}{_given(e)}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def _where(loc: list[Any]) -> str:
    """A pydantic location as ``segments[0].start`` (list indices in brackets, like decode's)."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def _given(error: Any) -> str:
    """`` (got 5)`` for a short scalar input of a validation error, else nothing."""
    value = error.get("input") if isinstance(error, dict) else None
    if isinstance(value, bool | int | float | str) and len(text := repr(value)) <= 40:
        return f" (got {text})"
    return ""


def _allowed_methods(request: Request) -> list[str]:
    """Every method the app's routes accept on the request's path (for a 405's ``Allow``)."""
    methods: set[str] = set()
    for route in request.app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Register the table on ``app``; anything unexpected is logged and answered 500 in JSON."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    app.add_exception_handler(ApiError, api_error)

    for exc_type, status, code in ERROR_TABLE:

        def make(status: int = status, code: str = code) -> Any:
            async def handler(_: Request, exc: Exception) -> JSONResponse:
                if status >= 500:
                    log.warning("%s: %s", code, exc)
                return error_response(status, code, str(exc))

            return handler

        app.add_exception_handler(exc_type, make())

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "body is not valid JSON")
        return error_response(422, "invalid_input", _format_validation(errors))

    app.add_exception_handler(RequestValidationError, validation)

    async def model_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ValidationError)
        return error_response(422, "invalid_input", _format_validation(list(exc.errors())))

    app.add_exception_handler(ValidationError, model_validation)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette names only the first route of the path
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return error_response(exc.status_code, "http_error", str(exc.detail), headers)

    app.add_exception_handler(StarletteHTTPException, http_error)
