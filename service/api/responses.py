"""JSON answers as bytes, built with orjson (about 15x faster than ``json.dumps`` on a
``/localize`` answer; loadtests/README.md has the measurements).

The answer parses to what ``json.dumps(data, separators=(",", ":"))`` would give: floats are
written as the shortest text that reads back to the same float64 (``1e-7`` where ``json.dumps``
writes ``1e-07``), and non-ASCII text stays UTF-8 instead of ``\\uXXXX`` escapes.
orjson writes a non-finite float as ``null``; no answer holds one (frames are checked finite on
the way in, and every score is a sigmoid output).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

JSON = "application/json"


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON bytes of ``data`` (dicts, lists, str, int, float, bool, None)."""
    return orjson.dumps(data)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A ``Response`` of ``data`` as JSON (see :func:`dumps`)."""
    return Response(dumps(data), status_code=status, media_type=JSON, headers=headers)
