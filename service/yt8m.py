"""The YouTube-8M frame-level conventions: quantization, segments, and the ``Video`` record.

These are the contract with real data (see docs/contracts.md, "Frame format"):

- 1 frame per second, a 1024-d visual (``rgb``) and a 128-d ``audio`` vector per frame, at most 300
  frames per video, each value quantized to uint8 over the range [-2, 2].
- A segment is 5 consecutive frames starting at a multiple of 5; a video of F frames has F // 5
  segments (a trailing partial segment is never rated nor scored).
- Segment id = ``"{video_id}:{start}"``.
- Class ids are vocabulary indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import numpy.typing as npt

RGB_DIM = 1024
AUDIO_DIM = 128
FEATURE_DIM = RGB_DIM + AUDIO_DIM
SEGMENT_FRAMES = 5
MAX_FRAMES = 300

QUANT_MIN = -2.0
QUANT_MAX = 2.0
_QUANT_RANGE = QUANT_MAX - QUANT_MIN
QUANT_SCALE = _QUANT_RANGE / 255.0
QUANT_BIAS = _QUANT_RANGE / 512.0 + QUANT_MIN

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@overload
def dequantize(q: npt.ArrayLike) -> F32: ...


@overload
def dequantize(q: npt.ArrayLike, dtype: type[np.float64]) -> npt.NDArray[np.float64]: ...


def dequantize(q: npt.ArrayLike, dtype: type[np.floating[Any]] = np.float32) -> npt.NDArray[Any]:
    """Quantized levels -> floats as the YouTube-8M starter code: ``q * 4/255 + (4/512 - 2)``.

    The one dequantization rule of the project (serving, the frame cache, the torch batches).

    Args:
        q: uint8 levels of any shape (or float means of levels, e.g. a video's mean frame: the map
            is affine, so the mean of dequantized frames is the dequantized mean).
        dtype: ``np.float32`` (the starter code; what every model is fed) or ``np.float64``
            (statistics); the arithmetic runs in this type.
    """
    out = np.asarray(q).astype(dtype)
    out *= dtype(QUANT_SCALE)
    out += dtype(QUANT_BIAS)
    return out


def quantize(x: npt.ArrayLike) -> U8:
    """float -> uint8, the inverse of :func:`dequantize` (nearest level, clipped to [0, 255]).

    ``quantize(dequantize(q)) == q`` for every uint8 ``q``.
    """
    a = np.asarray(x, dtype=np.float64)
    q = np.rint((a - QUANT_BIAS) / QUANT_SCALE)
    return np.clip(q, 0, 255).astype(np.uint8)


def num_segments(num_frames: int) -> int:
    """Number of whole 5-frame segments in a video of ``num_frames`` frames."""
    return max(int(num_frames), 0) // SEGMENT_FRAMES


def segment_starts(num_frames: int) -> I64:
    """Start frame of every whole segment: ``[0, 5, 10, ...]``, shape [F // 5]."""
    return np.arange(num_segments(num_frames), dtype=np.int64) * SEGMENT_FRAMES


def segment_end(start: int) -> int:
    """The end frame (exclusive) of the segment that starts at frame ``start``."""
    return int(start) + SEGMENT_FRAMES


def segment_ends(starts: I64) -> I64:
    """The end frames (exclusive) of segments: int64 [n] start frames -> int64 [n]."""
    return np.asarray(starts, dtype=np.int64) + SEGMENT_FRAMES


def segment_id(video_id: str, start: int) -> str:
    """The challenge's segment token ``"{video_id}:{start}"``."""
    return f"{video_id}:{int(start)}"


def parse_segment_id(token: str) -> tuple[str, int]:
    """Inverse of :func:`segment_id`; raises ``ValueError`` on a malformed token."""
    vid, sep, start = token.rpartition(":")
    if not sep or not vid or not start.lstrip("-").isdigit():
        raise ValueError(f"malformed segment token {token!r} (expected 'videoid:start')")
    return vid, int(start)


def _empty(dtype: type) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass(slots=True)
class Video:
    """One video in the YouTube-8M frame-level layout.

    Attributes:
        id: the video id (the context feature ``id``).
        rgb: uint8 [F, 1024], quantized visual features.
        audio: uint8 [F, 128], quantized audio features.
        labels: int64 [L], video-level class ids (may be noisy; not segment labels).
        segment_labels: int64 [R], the class of each segment rating.
        segment_starts: int64 [R], the start frame of each rated segment (a multiple of 5).
        segment_scores: float32 [R], 1.0 for a positive rating, 0.0 for a negative one.
    """

    id: str
    rgb: U8
    audio: U8
    labels: I64 = field(default_factory=lambda: _empty(np.int64))
    segment_labels: I64 = field(default_factory=lambda: _empty(np.int64))
    segment_starts: I64 = field(default_factory=lambda: _empty(np.int64))
    segment_scores: F32 = field(default_factory=lambda: _empty(np.float32))

    def __post_init__(self) -> None:
        if self.rgb.ndim != 2 or self.rgb.shape[1] != RGB_DIM:
            raise ValueError(f"video {self.id!r}: rgb must be [F, {RGB_DIM}], got {self.rgb.shape}")
        if self.audio.ndim != 2 or self.audio.shape[1] != AUDIO_DIM:
            raise ValueError(
                f"video {self.id!r}: audio must be [F, {AUDIO_DIM}], got {self.audio.shape}"
            )
        if self.rgb.shape[0] != self.audio.shape[0]:
            raise ValueError(
                f"video {self.id!r}: {self.rgb.shape[0]} rgb frames but "
                f"{self.audio.shape[0]} audio frames"
            )
        n = len(self.segment_labels)
        if len(self.segment_starts) != n or len(self.segment_scores) != n:
            raise ValueError(
                f"video {self.id!r}: segment_labels, segment_starts and segment_scores "
                f"differ in length ({n}, {len(self.segment_starts)}, {len(self.segment_scores)})"
            )

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def num_segments(self) -> int:
        return num_segments(self.num_frames)

    @property
    def is_rated(self) -> bool:
        """True when the record carries segment ratings."""
        return len(self.segment_labels) > 0

    def features(self) -> F32:
        """Dequantized frames, rgb then audio: float32 [F, 1152]."""
        return np.concatenate([dequantize(self.rgb), dequantize(self.audio)], axis=1)

    def quantized(self) -> U8:
        """Quantized frames, rgb then audio: uint8 [F, 1152]."""
        return np.concatenate([self.rgb, self.audio], axis=1)
