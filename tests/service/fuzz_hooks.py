"""Schemathesis hooks for the contract-fuzz test (``SCHEMATHESIS_HOOKS=tests.service.fuzz_hooks``).

The OpenAPI document states every per-field bound the server enforces. Three constraints tie
fields together, which JSON Schema cannot state, so the document gives them in prose (see
:mod:`service.api.openapi`): rgb and audio have the same frame count F; a ``b64`` string holds
exactly ``F * D * itemsize`` bytes of values in range; a label's start lies inside the video and
appears once (also in a label by reference, which has no frames). For **positive** cases only,
:func:`map_case` makes a generated body meet them, keeping everything else as generated (dtype, F,
encodings, every other field), so "a schema-valid request the server rejects" stays a real
failure. Negative cases are sent as generated.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import schemathesis

from service.yt8m import AUDIO_DIM, RGB_DIM, SEGMENT_FRAMES

_rng = np.random.default_rng(0)


def _count(frames: Any) -> int | None:
    if isinstance(frames, list):
        return len(frames)
    if isinstance(frames, dict) and isinstance(frames.get("shape"), list) and frames["shape"]:
        return int(frames["shape"][0])
    return None


def _b64(dtype: str, n: int, width: int) -> str:
    if dtype == "float32":
        raw = _rng.uniform(-2.0, 2.0, size=(n, width)).astype("<f4").tobytes()
    else:
        raw = _rng.integers(0, 256, size=(n, width), dtype=np.uint8).tobytes()
    return base64.b64encode(raw).decode("ascii")


def _fit(frames: Any, n: int, width: int) -> Any:
    """``frames`` with ``n`` frames and a consistent payload, in the encoding it was made in."""
    if isinstance(frames, list):
        rows = frames or [[0.0] * width]
        return [rows[i % len(rows)] for i in range(n)]
    if isinstance(frames, dict):
        dtype = frames.get("dtype", "uint8")
        return {**frames, "shape": [n, width], "b64": _b64(dtype, n, width)}
    return frames


def _fix_segments(segments: Any, n: int) -> Any:
    if not isinstance(segments, list):
        return segments
    num_seg = max(n // SEGMENT_FRAMES, 1)
    seen: set[int] = set()
    out = []
    for seg in segments:
        raw = seg.get("start") if isinstance(seg, dict) else None
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            out.append(seg)
            continue
        start = (int(raw) // SEGMENT_FRAMES % num_seg) * SEGMENT_FRAMES  # 95.0 is an integer too
        if start not in seen:
            seen.add(start)
            out.append({**seg, "start": start})
    return out


def _unique_starts(segments: Any) -> Any:
    """A label by reference names each start once (its video's length is not in the body)."""
    if not isinstance(segments, list):
        return segments
    seen: set[Any] = set()
    out = []
    for seg in segments:
        start = seg.get("start") if isinstance(seg, dict) else None
        if start is None or start not in seen:
            seen.add(start)
            out.append(seg)
    return out


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Positive cases: the cross-field constraints of the frames and the label starts."""
    meta = getattr(case, "meta", None)
    body = case.body
    if meta is None or not meta.generation.mode.is_positive or not isinstance(body, dict):
        return case
    n = _count(body.get("rgb"))
    if n is None:
        if "rgb" not in body and "audio" not in body and "segments" in body:  # by reference
            case.body = {**body, "segments": _unique_starts(body["segments"])}
        return case
    body = {
        **body,
        "rgb": _fit(body.get("rgb"), n, RGB_DIM),
        "audio": _fit(body.get("audio"), n, AUDIO_DIM),
    }
    if "segments" in body:
        body["segments"] = _fix_segments(body["segments"], n)
    case.body = body
    return case
