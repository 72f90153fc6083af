"""Request bodies for the load tests and the service benchmark.

Videos come from YouTube-8M TFRecords (:func:`tfrecord_videos`) or are random quantized frames
(:func:`random_videos`). A video's frames are sent in one of three encodings, the API's FRAMES
formats (docs/architecture.md, "A /localize request"; :mod:`service.decode`):

- ``b64``: ``{"b64", "dtype": "uint8", "shape": [F, D]}``, the quantized bytes (the fast path);
- ``b64f32``: the same with ``dtype: "float32"``, the dequantized values;
- ``json``: nested JSON arrays of the dequantized floats, rounded to ``JSON_DECIMALS`` decimals
  (what a convenience client sends; about 10x the bytes of ``b64``).

Bodies are encoded to bytes once, up front (:class:`PayloadPool`), so the load generator spends its
time sending, not serializing.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from service.yt8m import (
    AUDIO_DIM,
    MAX_FRAMES,
    RGB_DIM,
    SEGMENT_FRAMES,
    Video,
    dequantize,
    segment_starts,
)

Encoding = Literal["b64", "b64f32", "json"]
ENCODINGS: tuple[Encoding, ...] = ("b64", "b64f32", "json")
JSON_DECIMALS = 6
U8 = npt.NDArray[np.uint8]


# The frames of one video: the runtime's record (only id, rgb and audio are used here).
VideoFrames = Video


def random_videos(
    count: int,
    *,
    min_frames: int = 60,
    max_frames: int = MAX_FRAMES,
    seed: int = 0,
    prefix: str = "rand",
) -> list[VideoFrames]:
    """``count`` videos of random length in [min_frames, max_frames] with structured random frames.

    Each video has its own mean feature vector plus per-frame noise and a slow drift, so the
    candidate model sees different classes in different videos and segments (not pure noise).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not SEGMENT_FRAMES <= min_frames <= max_frames <= MAX_FRAMES:
        raise ValueError(
            f"need {SEGMENT_FRAMES} <= min_frames <= max_frames <= {MAX_FRAMES}, "
            f"got {min_frames}..{max_frames}"
        )
    rng = np.random.default_rng(seed)
    videos = []
    width = RGB_DIM + AUDIO_DIM
    for i in range(count):
        f = int(rng.integers(min_frames, max_frames + 1))
        center = rng.normal(128.0, 24.0, size=(1, width)).astype(np.float32)
        drift = np.linspace(0.0, 1.0, f, dtype=np.float32)[:, None] * rng.normal(
            0.0, 16.0, size=(1, width)
        ).astype(np.float32)
        noise = rng.normal(0.0, 12.0, size=(f, width)).astype(np.float32)
        q = np.clip(np.rint(center + drift + noise), 0, 255).astype(np.uint8)
        videos.append(
            VideoFrames(f"{prefix}{seed}-{i:05d}", q[:, :RGB_DIM].copy(), q[:, RGB_DIM:].copy())
        )
    return videos


def tfrecord_videos(
    paths: Iterable[str | Path], *, limit: int, min_frames: int = SEGMENT_FRAMES
) -> list[VideoFrames]:
    """Up to ``limit`` videos read from YouTube-8M frame-level TFRecords (files, folders, globs).

    Videos shorter than ``min_frames`` are skipped; longer than 300 frames are cut to 300.
    """
    from service.tfrecord import read_videos

    out: list[VideoFrames] = []
    for video in read_videos(list(paths)):
        if video.num_frames < min_frames:
            continue
        n = min(video.num_frames, MAX_FRAMES)
        out.append(VideoFrames(video.id, video.rgb[:n], video.audio[:n]))
        if len(out) >= limit:
            break
    if not out:
        raise ValueError(f"no video with at least {min_frames} frames in {list(paths)}")
    return out


def frames_payload(q: U8, encoding: Encoding) -> Any:
    """One FRAMES value of the API for the quantized array ``q`` uint8 [F, D]."""
    if encoding == "b64":
        raw = np.ascontiguousarray(q, dtype=np.uint8)
        dtype = "uint8"
    elif encoding == "b64f32":
        raw = np.ascontiguousarray(dequantize(q), dtype="<f4")
        dtype = "float32"
    elif encoding == "json":
        return np.round(dequantize(q).astype(np.float64), JSON_DECIMALS).tolist()
    else:
        raise ValueError(f"unknown encoding {encoding!r} (use one of {', '.join(ENCODINGS)})")
    return {
        "b64": base64.b64encode(raw.tobytes()).decode("ascii"),
        "dtype": dtype,
        "shape": [int(raw.shape[0]), int(raw.shape[1])],
    }


def localize_body(
    video: VideoFrames,
    encoding: Encoding,
    *,
    video_id: str | None = None,
    classes: Sequence[int] | None = None,
    max_classes: int | None = None,
    max_segments: int | None = None,
    index: bool | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /localize`` (optional fields left out when None)."""
    body: dict[str, Any] = {}
    if video_id is not None:
        body["video_id"] = video_id
    body["rgb"] = frames_payload(video.rgb, encoding)
    body["audio"] = frames_payload(video.audio, encoding)
    if classes is not None:
        body["classes"] = [int(c) for c in classes]
    if max_classes is not None:
        body["max_classes"] = int(max_classes)
    if max_segments is not None:
        body["max_segments"] = int(max_segments)
    if index is not None:
        body["index"] = bool(index)
    return body


def labels_body(
    video: VideoFrames, segments: Sequence[tuple[int, int]], encoding: Encoding = "b64"
) -> dict[str, Any]:
    """The JSON body of ``POST /classes/{class_id}/labels``: ``segments`` are (start, 0|1)."""
    starts = set(segment_starts(video.num_frames).tolist())
    for start, label in segments:
        if start not in starts:
            raise ValueError(f"video {video.id!r}: no whole segment starts at frame {start}")
        if label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {label!r}")
    return {
        "video_id": video.id,
        "rgb": frames_payload(video.rgb, encoding),
        "audio": frames_payload(video.audio, encoding),
        "segments": [{"start": int(s), "label": int(lab)} for s, lab in segments],
    }


def encode_json(body: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON bytes of a request body."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")


def with_video_id(body: bytes, video_id: str) -> bytes:
    """A pre-encoded JSON object body with ``"video_id"`` added in front (no re-serialization).

    The body must not already carry a ``video_id``.
    """
    if not body.startswith(b"{") or body.startswith(b'{"video_id"'):
        raise ValueError("body must be a JSON object without a video_id")
    head = b'{"video_id":' + json.dumps(video_id).encode("utf-8")
    return head + (b"}" if body == b"{}" else b"," + body[1:])


@dataclass
class PayloadPool:
    """Pre-encoded ``/localize`` bodies (bytes) for a set of videos, per encoding.

    Attributes:
        videos: the videos.
        bodies: encoding -> one body per video (same order as ``videos``), without ``video_id``.
    """

    videos: list[VideoFrames]
    bodies: dict[str, list[bytes]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        videos: Sequence[VideoFrames],
        encodings: Iterable[Encoding] = ("b64", "json"),
        *,
        max_classes: int | None = None,
        index: bool | None = None,
    ) -> PayloadPool:
        if not videos:
            raise ValueError("PayloadPool needs at least one video")
        pool = cls(list(videos))
        for enc in encodings:
            pool.bodies[enc] = [
                encode_json(localize_body(v, enc, max_classes=max_classes, index=index))
                for v in pool.videos
            ]
        return pool

    def pick(self, encoding: Encoding, rnd: random.Random) -> tuple[int, bytes]:
        """A random (video index, body) of ``encoding``."""
        bodies = self.bodies.get(encoding)
        if not bodies:
            raise KeyError(f"no {encoding!r} bodies in the pool (built: {sorted(self.bodies)})")
        i = rnd.randrange(len(bodies))
        return i, bodies[i]

    def sizes(self) -> dict[str, float]:
        """Mean body size in bytes per encoding."""
        return {enc: float(np.mean([len(b) for b in bs])) for enc, bs in self.bodies.items()}
