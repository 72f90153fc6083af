"""Decoding of frame payloads: JSON float arrays or base64 of uint8 / float32 arrays, with numpy.

A FRAMES payload is one of

- a JSON array of arrays of dequantized floats, shape [F, D];
- ``{"b64": str, "dtype": "uint8" | "float32", "shape": [F, D]}``: the raw little-endian bytes of
  the array, base64-encoded. ``uint8`` means YouTube-8M-quantized (dequantized here exactly as the
  starter code does), ``float32`` means already dequantized.

Values must be finite and lie where dequantized YouTube-8M features can: ``[-2, 2]`` (uint8 levels
dequantize to ``[-1.992, 2.008]``), with a tolerance of :data:`FRAME_VALUE_TOLERANCE` for float32
and JSON input, so ``|value| <= 2.05``. Anything else (a float32 3.4e38, a NaN, an Inf) is a 422
naming the field and the first bad position, before any model runs.

Every problem raises :class:`InputError` with a message naming the field, never a bare numpy error.
Nothing here loops over numbers in Python.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pybase64

from service.yt8m import AUDIO_DIM, MAX_FRAMES, RGB_DIM, SEGMENT_FRAMES, dequantize

F32 = npt.NDArray[np.float32]

SUPPORTED_DTYPES: dict[str, np.dtype[Any]] = {
    "uint8": np.dtype(np.uint8),
    "float32": np.dtype("<f4"),
}
_B64_KEYS = frozenset({"b64", "dtype", "shape"})

FRAME_VALUE_BOUND = 2.0
"""Dequantized YouTube-8M features lie in ``[-FRAME_VALUE_BOUND, FRAME_VALUE_BOUND]``."""
FRAME_VALUE_TOLERANCE = 0.05
"""How far past the bound a float32 / JSON value may lie (rounding, other dequantizers)."""
FRAME_VALUE_LIMIT = FRAME_VALUE_BOUND + FRAME_VALUE_TOLERANCE


class InputError(ValueError):
    """A request payload is invalid; ``field`` names where (e.g. ``"rgb"``, ``"classes[2]"``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _first_bad(arr: F32, bad_mask: npt.NDArray[np.bool_]) -> str:
    """Position and value of the first bad value of a 2-D array, e.g. ``[3][17] is NaN``."""
    bad = np.argwhere(bad_mask)[0]
    value = float(arr[tuple(bad)])
    if np.isfinite(value):
        kind = f"{value:.6g}"
    else:
        kind = "NaN" if np.isnan(value) else ("Inf" if value > 0 else "-Inf")
    return "".join(f"[{int(i)}]" for i in bad) + f" is {kind}"


def check_values(arr: F32, field: str) -> None:
    """Every value finite and within ``±FRAME_VALUE_LIMIT``; else an InputError at the first."""
    limit = np.float32(FRAME_VALUE_LIMIT) if arr.dtype == np.float32 else FRAME_VALUE_LIMIT
    ok = np.abs(arr) <= limit  # False for NaN too
    if ok.all():
        return
    finite = np.isfinite(arr)
    if not finite.all():
        raise InputError(field, f"values must be finite: {field}{_first_bad(arr, ~finite)}")
    raise InputError(
        field,
        f"values must lie in [-{FRAME_VALUE_BOUND:g}, {FRAME_VALUE_BOUND:g}] (dequantized "
        f"YouTube-8M features, tolerance {FRAME_VALUE_TOLERANCE:g}): {field}{_first_bad(arr, ~ok)}",
    )


def _from_json_array(value: list[Any], field: str) -> F32:
    if len(value) == 0:
        raise InputError(field, "no frames (an empty array)")
    try:
        arr = np.array(value)
    except (ValueError, TypeError) as e:
        raise InputError(
            field, f"must be an array of frames of equal length ({type(e).__name__}: {e})"
        ) from None
    if arr.dtype.kind not in "fiu":
        raise InputError(field, "must hold only numbers (an array of arrays of floats)")
    check_values(arr, field)  # before the float32 cast, which would turn 1e300 into Inf
    return arr.astype(np.float32, copy=False)


def _is_integer(d: Any) -> bool:
    """A JSON integer: ``5`` or ``5.0`` (JSON Schema's integer), never a boolean."""
    if isinstance(d, bool):
        return False
    return isinstance(d, int) or (isinstance(d, float) and d.is_integer())


def _parse_shape(raw: Any, field: str) -> tuple[int, int]:
    if not isinstance(raw, list | tuple) or len(raw) != 2 or not all(_is_integer(d) for d in raw):
        raise InputError(f"{field}.shape", f"must be two integers [F, D], got {raw!r}")
    f, d = int(raw[0]), int(raw[1])
    if f < 0 or d < 0:
        raise InputError(f"{field}.shape", f"must not be negative, got {[f, d]}")
    return f, d


def _from_b64(value: Mapping[str, Any], field: str, max_frames: int) -> F32:
    missing = sorted(_B64_KEYS - value.keys())
    if missing:
        raise InputError(field, f"missing key(s) {', '.join(missing)} (need b64, dtype, shape)")
    extra = sorted(set(value.keys()) - _B64_KEYS)
    if extra:
        raise InputError(field, f"unknown key(s) {', '.join(extra)} (allowed: b64, dtype, shape)")
    dtype_name = value["dtype"]
    if not isinstance(dtype_name, str) or dtype_name not in SUPPORTED_DTYPES:
        raise InputError(
            f"{field}.dtype",
            f"unsupported dtype {dtype_name!r} (use 'uint8' for YouTube-8M-quantized "
            "or 'float32' for dequantized)",
        )
    dtype = SUPPORTED_DTYPES[dtype_name]
    f, d = _parse_shape(value["shape"], field)
    if f > max_frames:
        raise InputError(f"{field}.shape", f"{f} frames is more than the cap of {max_frames}")
    text = value["b64"]
    if not isinstance(text, str):
        raise InputError(f"{field}.b64", "must be a base64 string")
    try:
        raw = pybase64.b64decode(text, validate=True)  # SIMD: 40x the stdlib's, same errors
    except (binascii.Error, ValueError) as e:
        raise InputError(f"{field}.b64", f"is not valid base64 ({e})") from None
    need = f * d * dtype.itemsize
    if len(raw) != need:
        raise InputError(
            field,
            f"shape [{f}, {d}] of {dtype_name} needs {need} bytes but b64 holds {len(raw)}",
        )
    arr = np.frombuffer(raw, dtype=dtype).reshape(f, d)
    if dtype == np.uint8:
        return dequantize(arr)
    return arr.astype(np.float32, copy=False)


def decode_frames(
    value: Any,
    field: str,
    width: int,
    *,
    min_frames: int = SEGMENT_FRAMES,
    max_frames: int = MAX_FRAMES,
) -> F32:
    """Decode one FRAMES payload into float32 [F, width], checking shape, frame count and values.

    Args:
        value: the parsed JSON value (a list of lists, or a ``{"b64", "dtype", "shape"}`` object),
            or the numbers of a list of lists already read into a numpy array [F, D].
        field: the field name used in error messages (``"rgb"`` or ``"audio"``).
        width: the expected values per frame (1024 for rgb, 128 for audio).
    """
    checked = True  # values checked where they were read (JSON numbers: before the float32 cast)
    if isinstance(value, list):
        arr = _from_json_array(value, field)
    elif isinstance(value, np.ndarray) and value.dtype.kind in "fiu":  # JSON arrays read ahead
        check_values(value, field)
        arr = value.astype(np.float32, copy=False)
    elif isinstance(value, Mapping):
        arr = _from_b64(value, field, max_frames)
        checked = value.get("dtype") == "uint8"  # dequantized levels always lie within ±2
    else:
        raise InputError(
            field,
            f"must be an array of frames or a {{b64, dtype, shape}} object, "
            f"got {type(value).__name__}",
        )
    if arr.ndim != 2:
        raise InputError(
            field, f"must be a 2-D array [F, {width}], got {arr.ndim} dimension(s) {arr.shape}"
        )
    n, d = arr.shape
    if d != width:
        raise InputError(field, f"has {d} values per frame, expected {width}")
    if n == 0:
        raise InputError(field, "no frames")
    if n < min_frames:
        raise InputError(
            field, f"{n} frame(s) is fewer than {min_frames} (one {SEGMENT_FRAMES}-frame segment)"
        )
    if n > max_frames:
        raise InputError(field, f"{n} frames is more than the cap of {max_frames}")
    if not checked:
        check_values(arr, field)
    return arr


def decode_video(
    rgb: Any,
    audio: Any,
    *,
    min_frames: int = SEGMENT_FRAMES,
    max_frames: int = MAX_FRAMES,
) -> F32:
    """Decode the rgb and audio payloads of one video: float32 [F, 1152] (rgb then audio)."""
    a = decode_frames(rgb, "rgb", RGB_DIM, min_frames=min_frames, max_frames=max_frames)
    b = decode_frames(audio, "audio", AUDIO_DIM, min_frames=min_frames, max_frames=max_frames)
    if a.shape[0] != b.shape[0]:
        raise InputError(
            "audio", f"{b.shape[0]} audio frames but {a.shape[0]} rgb frames (must be equal)"
        )
    return np.concatenate([a, b], axis=1)


def encode_frames(arr: npt.NDArray[Any]) -> dict[str, Any]:
    """The b64 FRAMES payload of a uint8 or float32 [F, D] array (for clients and tests)."""
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        name = "uint8"
    elif a.dtype == np.float32:
        name = "float32"
        a = a.astype("<f4", copy=False)
    else:
        raise ValueError(f"encode_frames: dtype {a.dtype} is not uint8 or float32")
    if a.ndim != 2:
        raise ValueError(f"encode_frames: need a 2-D array, got shape {a.shape}")
    return {
        "b64": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii"),
        "dtype": name,
        "shape": [int(a.shape[0]), int(a.shape[1])],
    }
