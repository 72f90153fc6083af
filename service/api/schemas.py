"""Request and response schemas of the HTTP API: the one definition of each body, and the
OpenAPI documentation.

Requests are pydantic models, validated by the routes. FRAMES fields stay untyped JSON here (a list
of lists, or a ``{b64, dtype, shape}`` object) and are decoded with numpy by :mod:`service.decode`,
never number by number in Python.

Responses are TypedDicts (closed: no other key) built only by the functions below them from the
runtime's results; the routes serialize what those functions return as it is, with no pydantic pass
over every number, and a test checks the answers against ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, NotRequired

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from service.bank import ClassBank
from service.localize import Localized
from service.scorer import ClassSegments
from service.stores.base import IndexEntry, StoreHealth, WriteResult
from service.yt8m import MAX_FRAMES, segment_end, segment_ends

FRAMES_SCHEMA: dict[str, Any] = {
    "description": (
        "Frames: a JSON array [F, D] of dequantized floats, or "
        '{"b64": str, "dtype": "uint8"|"float32", "shape": [F, D]} (uint8 = YouTube-8M-quantized).'
    ),
    "anyOf": [
        {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        {
            "type": "object",
            "properties": {
                "b64": {"type": "string"},
                "dtype": {"type": "string", "enum": ["uint8", "float32"]},
                "shape": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["b64", "dtype", "shape"],
        },
    ],
}

Frames = Annotated[list[Any] | dict[str, Any], Field(json_schema_extra=FRAMES_SCHEMA)]
VideoId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]
ClassId = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LocalizeRequest(_Strict):
    """``POST /localize``."""

    video_id: VideoId | None = None
    rgb: Frames
    audio: Frames
    classes: list[int] | None = Field(default=None, min_length=1, max_length=10_000)
    max_classes: int | None = Field(default=None, ge=1, le=10_000)
    max_segments: int | None = Field(default=None, ge=1)
    index: bool = True


class LabelSegment(_Strict):
    start: int = Field(ge=0, description="Segment start frame, a multiple of 5.")
    label: Literal[0, 1]


class LabelsRequest(_Strict):
    """``POST /classes/{class_id}/labels``."""

    video_id: VideoId
    rgb: Frames
    audio: Frames
    segments: list[LabelSegment] = Field(min_length=1, max_length=MAX_FRAMES)


# ---------------------------------------------------------------------------- responses
_CLOSED = ConfigDict(extra="forbid")


@with_config(_CLOSED)
class Segment(TypedDict):
    start: int
    end: int
    score: float


@with_config(_CLOSED)
class ClassResult(TypedDict):
    class_id: int
    name: str
    video_score: float
    segments: list[Segment]


@with_config(_CLOSED)
class LocalizeResponse(TypedDict):
    video_id: str | None
    model_version: str
    num_segments: int
    indexed: Annotated[bool, Field(description="True when the scores entered the corpus index.")]
    classes: list[ClassResult]
    warnings: NotRequired[
        Annotated[list[str], Field(description="Why the scores were not indexed (only then).")]
    ]


def class_result(c: ClassSegments) -> ClassResult:
    """One scored class: its best segments (``end = start + 5``), scores as float64 JSON."""
    starts = c.starts.tolist()
    ends = segment_ends(c.starts).tolist()
    scores = c.scores.astype(np.float64).tolist()
    return {
        "class_id": c.class_id,
        "name": c.name,
        "video_score": c.video_score,
        "segments": [
            {"start": a, "end": b, "score": v} for a, b, v in zip(starts, ends, scores, strict=True)
        ],
    }


def localize_response(done: Localized, model_version: str) -> LocalizeResponse:
    """The answer of ``POST /localize``."""
    out: LocalizeResponse = {
        "video_id": done.video_id,
        "model_version": model_version,
        "num_segments": done.localization.num_segments,
        "indexed": done.indexed,
        "classes": [class_result(c) for c in done.localization.classes],
    }
    if done.warnings:
        out["warnings"] = list(done.warnings)
    return out


@with_config(_CLOSED)
class IndexedSegment(TypedDict):
    video_id: str
    start: int
    end: int
    score: float


@with_config(_CLOSED)
class TopSegmentsResponse(TypedDict):
    class_id: int
    name: str
    total: int
    segments: list[IndexedSegment]


def top_segments_response(
    class_id: int, name: str, total: int, entries: Sequence[IndexEntry]
) -> TopSegmentsResponse:
    """The answer of ``GET /classes/{class_id}/top-segments``: one page of the class's index."""
    return {
        "class_id": class_id,
        "name": name,
        "total": total,
        "segments": [
            {
                "video_id": e.video_id,
                "start": e.start,
                "end": segment_end(e.start),
                "score": e.score,
            }
            for e in entries
        ],
    }


@with_config(_CLOSED)
class BankCounts(TypedDict):
    positive: int
    negative: int


@with_config(_CLOSED)
class ClassInfoOut(TypedDict):
    class_id: int
    name: str
    bank: BankCounts


@with_config(_CLOSED)
class ClassesResponse(TypedDict):
    classes: list[ClassInfoOut]


def classes_response(names: Sequence[str], bank: ClassBank) -> ClassesResponse:
    """The answer of ``GET /classes``: every vocabulary class (id = position in ``names``) and its
    bank counts."""
    pos = bank.pos_count.tolist()
    neg = bank.neg_count.tolist()
    return {
        "classes": [
            {"class_id": c, "name": name, "bank": {"positive": pos[c], "negative": neg[c]}}
            for c, name in enumerate(names)
        ]
    }


@with_config(_CLOSED)
class LabelsResponse(TypedDict):
    class_id: int
    video_id: str
    added: int
    bank_version: int
    bank: BankCounts


def labels_response(
    class_id: int, video_id: str, added: int, result: WriteResult
) -> LabelsResponse:
    """The answer of ``POST /classes/{class_id}/labels``: what the write left in the bank."""
    return {
        "class_id": class_id,
        "video_id": video_id,
        "added": added,
        "bank_version": result.version,
        "bank": {"positive": result.positive, "negative": result.negative},
    }


@with_config(_CLOSED)
class Health(TypedDict):
    status: str


HEALTHY: Health = {"status": "ok"}
"""The answer of ``GET /healthz``."""


@with_config(_CLOSED)
class Readiness(TypedDict):
    status: Literal["ready", "degraded"]
    model: str
    model_version: str
    store: str
    store_reachable: bool
    store_detail: str
    bank_version: int
    degraded: bool


def readiness(model: str, model_version: str, health: StoreHealth, bank_version: int) -> Readiness:
    """The answer of ``GET /readyz``: ``degraded`` while the shared store cannot be reached."""
    return {
        "status": "ready" if health.reachable else "degraded",
        "model": model,
        "model_version": model_version,
        "store": health.kind,
        "store_reachable": health.reachable,
        "store_detail": health.detail,
        "bank_version": bank_version,
        "degraded": not health.reachable,
    }


@with_config(_CLOSED)
class ErrorResponse(TypedDict):
    detail: str
    error: str


def error_body(code: str, detail: str) -> ErrorResponse:
    """Every error answer: what is wrong, and its code."""
    return {"detail": detail, "error": code}
