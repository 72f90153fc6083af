"""Strict bearer-token checks: label writes need the write token; indexing a video needs the
write token or the index token.

The header must be exactly ``Authorization: Bearer <token>``: the scheme spelled ``Bearer``, one
space, and the token with no whitespace around or inside it (HTTP parsers drop whitespace at the
ends of a header value before the app sees it, RFC 9110 5.5; what remains is checked here). The
configured tokens were stripped once at start-up (:class:`service.config.Settings`); the sent one
is never stripped. Tokens are compared in constant time. Two ``Authorization`` headers are a 400
(:mod:`service.api.guards`).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.datastructures import Headers

from service.api.errors import Unauthorized, WritesDisabled
from service.config import Settings

SCHEME = "Bearer "
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class IndexingDisabled(WritesDisabled):
    """Indexing asked for, but the service has neither a write token nor an index token."""


def sent_token(headers: Headers) -> str:
    """The token of a well-formed ``Authorization: Bearer <token>`` header; 401 otherwise."""
    values = headers.getlist("authorization")
    if not values:
        raise Unauthorized("missing 'Authorization: Bearer <token>' header", headers=_CHALLENGE)
    value = values[0]
    token = value[len(SCHEME) :] if value.startswith(SCHEME) else ""
    if not token or any(ch.isspace() for ch in token):
        raise Unauthorized(
            "malformed Authorization header: expected exactly 'Bearer <token>' "
            "(one space, no other whitespace)",
            headers=_CHALLENGE,
        )
    return token


def _matches(token: str, allowed: Sequence[str]) -> bool:
    """Constant-time comparison against every allowed token (no early exit)."""
    given = token.encode()
    hits = [hmac.compare_digest(given, a.encode()) for a in allowed]
    return any(hits)


def require_write(settings: Settings, headers: Headers) -> None:
    """Label writes: the write token, else 401 (403 when writes are disabled)."""
    token = settings.token()
    if token is None:
        raise WritesDisabled("writes are disabled: the service has no CCRL_API_TOKEN configured")
    if not _matches(sent_token(headers), (token,)):
        raise Unauthorized("invalid bearer token", headers=_CHALLENGE)


def require_index(settings: Settings, headers: Headers, video_id: str) -> None:
    """Indexing ``video_id``: the write token or the index token, else 401 (403 when neither is
    configured). The message says how to score without indexing."""
    allowed = settings.index_tokens()
    hint = 'or send "index": false to score without indexing'
    if not allowed:
        raise IndexingDisabled(
            f"indexing video {video_id!r} is disabled: the service has no CCRL_API_TOKEN or "
            f"CCRL_INDEX_TOKEN configured ({hint})"
        )
    try:
        token = sent_token(headers)
    except Unauthorized as e:
        raise Unauthorized(
            f"indexing video {video_id!r} needs the token: {e.detail} ({hint})", headers=_CHALLENGE
        ) from None
    if not _matches(token, allowed):
        raise Unauthorized(f"invalid bearer token for indexing ({hint})", headers=_CHALLENGE)
