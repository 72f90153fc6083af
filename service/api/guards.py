"""Request guards of the app, before any route work: header count, duplicate ``Authorization``,
the JSON content type of bodies, and quiet client disconnects.

- :class:`HeaderGuard` (pure ASGI middleware): more than ``CCRL_MAX_HEADERS`` header lines, or a
  head over ``CCRL_MAX_HEADER_BYTES``, is a 431; two ``Authorization`` headers a 400 (which one
  would count is ambiguous).
- :func:`require_json` (a route dependency): a body must be sent as ``application/json``
  (parameters allowed, ``charset`` only ``utf-8``), else 415: a cross-site form post
  (``text/plain``, ``application/x-www-form-urlencoded``) never reaches a route.
- :func:`install_disconnect_handler`: a client that went away while its body was read is logged
  in one line at debug level, never with a traceback, and counted with status 499 in the request
  metrics (nginx's "client closed request"; nothing is sent).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import ApiError, error_response

log = logging.getLogger("ccrl.api")

JSON_MEDIA_TYPE = "application/json"
DEFAULT_MAX_HEADERS = 64
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
CLIENT_CLOSED = 499
"""The status recorded (in the request metrics; never sent) for a client gone mid-request."""


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


async def require_json(request: Request) -> None:
    """415 unless the request's ``Content-Type`` is ``application/json`` (utf-8).

    ``async`` so that FastAPI runs it on the event loop, not in the thread pool (a hop per
    request)."""
    raw = request.headers.get("content-type")
    if raw is None:
        raise UnsupportedMediaType(
            f"missing Content-Type: the body must be sent as {JSON_MEDIA_TYPE}"
        )
    media, *params = (p.strip() for p in raw.split(";"))
    if media.lower() != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not supported: the body must be sent as {JSON_MEDIA_TYPE}"
        )
    for p in params:
        key, _, value = p.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in {
            "utf-8",
            "utf8",
        }:
            raise UnsupportedMediaType(f"charset {value.strip()!r} is not supported (use utf-8)")


class HeaderGuard:
    """Pure ASGI middleware: the header-count and head-size limits (431) and duplicate
    Authorization (400). (The protocol refuses a head over the size limit while it streams in;
    this catches one that arrived whole.)"""

    def __init__(
        self,
        app: ASGIApp,
        fastapi_app: FastAPI,
        max_headers: int | None,
        max_header_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes

    def _limits(self) -> tuple[int, int]:
        rt = getattr(self.fastapi_app.state, "runtime", None)
        count = self.max_headers or (rt.settings.max_headers if rt else DEFAULT_MAX_HEADERS)
        size = self.max_header_bytes or (
            rt.settings.max_header_bytes if rt else DEFAULT_MAX_HEADER_BYTES
        )
        return int(count), int(size)

    def _problem(self, scope: Scope) -> Response | None:
        headers = scope.get("headers", [])
        max_count, max_size = self._limits()
        if len(headers) > max_count:
            return error_response(
                431,
                "too_many_headers",
                f"{len(headers)} header lines is more than the limit of {max_count}",
            )
        size = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b""))
        size += sum(len(k) + len(v) + 4 for k, v in headers)
        if size > max_size:
            return error_response(
                431, "head_too_large", f"a request head of {size} bytes is over {max_size}"
            )
        if sum(1 for k, _ in headers if k == b"authorization") > 1:
            return error_response(
                400, "bad_authorization", "more than one Authorization header: send exactly one"
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = self._problem(scope) if scope["type"] == "http" else None
        if problem is None:
            await self.app(scope, receive, send)
        else:
            await problem(scope, receive, send)


def install_disconnect_handler(app: FastAPI) -> None:
    """A client gone while its body was read: one debug line, and an answer nobody receives."""

    async def gone(request: Request, _: Exception) -> Response:
        client = request.client
        log.debug(
            "%s disconnected before its request body arrived (%s %s)",
            f"{client.host}:{client.port}" if client else "a client",
            request.method,
            request.url.path,
        )
        return Response(status_code=CLIENT_CLOSED)

    app.add_exception_handler(ClientDisconnect, gone)
