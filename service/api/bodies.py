"""The fast path for request bodies whose frames are JSON arrays of floats.

A 90-frame video as JSON floats is ~1 MB of text. Parsed into Python lists (``pydantic_core``) and
converted with ``np.array``, it costs ~4 ms, 3-4x the scoring itself; simdjson reads the same
arrays straight into float64 buffers in ~1 ms (loadtests/README.md has the measurements).

:func:`parse_frames_body` tries that path and answers the same request model, with ``rgb`` and
``audio`` as numpy arrays float64 [F, D] (which :func:`service.decode.decode_frames` takes like
the JSON arrays they were: same float32 values, same checks). Whenever the body is anything but a
plain, well-formed case (frames not a flat array of arrays of numbers, duplicate keys, escapes,
numbers simdjson does not read, invalid JSON), it gives up and the caller's own parser handles the
body, with its own error messages: the fast path never decides that a body is invalid.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
FRAME_FIELDS = ("rgb", "audio")
_local = threading.local()


class _Slow(Exception):
    """The body is not a plain case of the fast path: use the generic parser."""


def _parser() -> Any:
    import simdjson

    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    return parser


def _brackets(value: Any) -> int:
    """'[' characters the JSON text of a (parsed) value holds: its arrays and its strings' '['."""
    if isinstance(value, str):
        return value.count("[")
    if isinstance(value, list):
        return 1 + sum(_brackets(v) for v in value)
    if isinstance(value, dict):
        return sum(_brackets(k) + _brackets(v) for k, v in value.items())
    return 0


def _frames(array: Any) -> tuple[np.ndarray, int]:
    """A simdjson array of F rows -> float64 [F, D] and its '[' count (1 + F when flat).

    Rows of unequal length, or rows that are not arrays, are :class:`_Slow`. Arrays nested in a
    row are found by the caller's bracket count (they add '[' beyond 1 + F)."""
    rows = len(array)
    if rows == 0:
        raise _Slow
    widths = {len(row) for row in array}
    if len(widths) != 1:
        raise _Slow
    flat = np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
    width = widths.pop()
    if flat.size != rows * width:
        raise _Slow
    return flat.reshape(rows, width), 1 + rows


def _split(body: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The body's other fields as Python values and its array frames as float64 arrays."""
    import simdjson

    try:
        doc = _parser().parse(body)
    except RuntimeError:  # a parser still referenced by an earlier document: use a new one
        _local.parser = None
        doc = _parser().parse(body)
    if not isinstance(doc, simdjson.Object):
        raise _Slow
    keys = list(doc.keys())
    if len(set(keys)) != len(keys):
        raise _Slow
    rest: dict[str, Any] = {}
    frames: dict[str, np.ndarray] = {}
    counted = 0
    for key in keys:
        value = doc[key]
        if key in FRAME_FIELDS and isinstance(value, simdjson.Array):
            frames[key], n = _frames(value)
            counted += n
            continue
        if isinstance(value, simdjson.Object | simdjson.Array):
            value = value.as_dict() if isinstance(value, simdjson.Object) else value.as_list()
        rest[key] = value
        counted += _brackets(key) + _brackets(value)
    if not frames or counted != body.count(b"["):
        raise _Slow
    return rest, frames


def parse_frames_body(body: bytes, model: type[M], fallback: Callable[[bytes], M]) -> M:
    """``model`` from ``body`` with array frames read by simdjson, or ``fallback(body)``.

    The fast path applies to bodies with at least one of ``rgb``/``audio`` given as JSON arrays,
    without backslash escapes; ``fallback`` (the generic parser) handles all the others.
    """
    if b"[[" not in body or b"\\" in body:
        return fallback(body)
    try:
        rest, frames = _split(body)
    except (_Slow, ValueError, TypeError):
        return fallback(body)
    placeholders = {name: [] for name in frames}
    req = model.model_validate({**rest, **placeholders})
    return req.model_copy(update=frames)
