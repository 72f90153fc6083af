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
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from service.api.review_schemas import EvidenceOut, evidence_out
from service.bank import ClassBank
from service.decode import FRAME_VALUE_BOUND, FRAME_VALUE_LIMIT, FRAME_VALUE_TOLERANCE
from service.explain import Evidence
from service.localize import Localized
from service.scorer import ClassSegments
from service.stores.base import IndexEntry, IndexState, RemoveResult, StoreHealth, WriteResult
from service.yt8m import AUDIO_DIM, MAX_FRAMES, RGB_DIM, SEGMENT_FRAMES, segment_end, segment_ends

MAX_CLASS_ID = 2**31 - 1
"""The largest class id the schema admits (the document narrows it to the vocabulary)."""
MAX_FRAMES_CAP = 100_000
"""The largest ``CCRL_MAX_FRAMES`` (the settings' bound); the document shows the configured cap."""
MAX_SEGMENTS = MAX_FRAMES // SEGMENT_FRAMES


def frames_schema(width: int) -> dict[str, Any]:
    """The JSON schema of a FRAMES field of ``width`` values per frame.

    ``x-bound`` marks the numbers that depend on the settings (frame counts): the OpenAPI document
    fills them in at run time (:mod:`service.api.openapi`).
    """
    value = {"type": "number", "minimum": -FRAME_VALUE_LIMIT, "maximum": FRAME_VALUE_LIMIT}
    return {
        "description": (
            f"Frames [F, {width}], F between the configured minimum and maximum frame counts "
            "(rgb and audio must have the same F). Either a JSON array of F arrays of "
            f"{width} dequantized floats in [-{FRAME_VALUE_BOUND:g}, {FRAME_VALUE_BOUND:g}] "
            f"(tolerance {FRAME_VALUE_TOLERANCE:g}), or "
            f'{{"b64", "dtype", "shape": [F, {width}]}}: the base64 of the raw little-endian '
            "array, exactly F * width * itemsize bytes (uint8 = YouTube-8M-quantized, 1 byte; "
            "float32 = dequantized, 4 bytes, same value range)."
        ),
        "anyOf": [
            {
                "type": "array",
                "minItems": SEGMENT_FRAMES,
                "maxItems": MAX_FRAMES,
                "x-bound": "frames",
                "items": {"type": "array", "minItems": width, "maxItems": width, "items": value},
            },
            {
                "type": "object",
                "properties": {
                    "b64": {"type": "string", "contentEncoding": "base64"},
                    "dtype": {"type": "string", "enum": ["uint8", "float32"]},
                    "shape": {
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 2,
                        "prefixItems": [
                            {
                                "type": "integer",
                                "minimum": SEGMENT_FRAMES,
                                "maximum": MAX_FRAMES,
                                "x-bound": "frame_count",
                            },
                            {"type": "integer", "const": width},
                        ],
                        "items": False,
                    },
                },
                "required": ["b64", "dtype", "shape"],
                "additionalProperties": False,
            },
        ],
    }


def json_integer(value: Any) -> Any:
    """A JSON integer as JSON Schema has it: ``5`` or ``5.0`` (a number without a fraction) is 5;
    booleans, strings and fractions stay as they are, for the strict int check to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = BeforeValidator(json_integer)
"""Put last in the ``Annotated`` of every integer field of a request body, after its bounds (so
an overflow is a 422), to take ``5.0`` as 5; the field stays strict (``true`` or ``"5"``: 422)."""

RgbFrames = Annotated[list[Any] | dict[str, Any], WithJsonSchema(frames_schema(RGB_DIM))]
AudioFrames = Annotated[list[Any] | dict[str, Any], WithJsonSchema(frames_schema(AUDIO_DIM))]
VideoId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]
ClassId = Annotated[
    int, Field(ge=0, le=MAX_CLASS_ID, json_schema_extra={"x-bound": "class_id"}), JsonInt
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LocalizeRequest(_Strict):
    """``POST /localize``."""

    video_id: VideoId | None = Field(
        default=None,
        description="The video's id: its own bank entries are left out of the similarities, and "
        "with `index` (the default) its scores enter the corpus index, which needs the bearer "
        "token (the write or the index token).",
    )
    rgb: RgbFrames
    audio: AudioFrames
    classes: list[ClassId] | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="Score these vocabulary ids instead of the candidate classes.",
    )
    max_classes: Annotated[int, Field(ge=1, le=10_000), JsonInt] | None = None
    max_segments: (
        Annotated[int, Field(ge=1, le=MAX_FRAMES_CAP // SEGMENT_FRAMES), JsonInt] | None
    ) = None
    index: bool = Field(default=True, description="Index the scores (with a `video_id`).")
    overwrite: bool = Field(
        default=False,
        description="Replace the index entries of a `video_id` that is already indexed (else 409).",
    )
    explain: bool = Field(
        default=False, description="Add each returned segment's evidence (costs a TreeSHAP pass)."
    )


SegmentStart = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_FRAMES_CAP - SEGMENT_FRAMES,
        json_schema_extra={"multipleOf": SEGMENT_FRAMES, "x-bound": "segment_start"},
    ),
    JsonInt,
]
Label = Annotated[int, Field(ge=0, le=1, json_schema_extra={"enum": [0, 1]}), JsonInt]


_BOTH_OR_NEITHER = {"rgb": ["audio"], "audio": ["rgb"]}


class LabelSegment(_Strict):
    start: SegmentStart = Field(
        description="Segment start frame: a multiple of 5 before the video's last whole segment "
        "ends; each start at most once per request."
    )
    label: Label = Field(description="1 positive, 0 negative.")


class LabelsRequest(_Strict):
    """``POST /classes/{class_id}/labels``: with the video's frames, or without them (both
    absent) for segments whose embeddings the service kept (``GET /classes/{c}/review``)."""

    model_config = ConfigDict(json_schema_extra={"dependentRequired": _BOTH_OR_NEITHER})

    video_id: VideoId
    rgb: RgbFrames = Field(  # type: ignore[assignment]
        default=None, description="With audio, or neither (labels by reference)."
    )
    audio: AudioFrames = Field(  # type: ignore[assignment]
        default=None, description="With rgb, or neither (labels by reference)."
    )
    segments: list[LabelSegment] = Field(
        min_length=1,
        max_length=MAX_FRAMES_CAP // SEGMENT_FRAMES,
        json_schema_extra={"x-bound": "segment_count"},
    )

    @model_validator(mode="after")
    def _frames_or_reference(self) -> LabelsRequest:
        """Frames are both given or both left out (a null is refused by the field's type)."""
        if (self.rgb is None) != (self.audio is None):
            given = "rgb" if self.audio is None else "audio"
            raise ValueError(
                f"{given} without {'audio' if given == 'rgb' else 'rgb'}: send both "
                "frames, or neither to label by reference"
            )
        return self

    @property
    def by_reference(self) -> bool:
        """No frames: the segments' embeddings come from the review store."""
        return self.rgb is None


class LabelsRemoveRequest(_Strict):
    """``DELETE /classes/{class_id}/labels``: the labelled segments of a video to take out."""

    video_id: VideoId
    starts: list[SegmentStart] = Field(
        min_length=1,
        max_length=MAX_FRAMES_CAP // SEGMENT_FRAMES,
        json_schema_extra={"x-bound": "segment_count", "uniqueItems": True},
        description="Segment start frames (multiples of 5, each once) of labels to remove; all "
        "must be in the class's bank, else 404 and nothing is removed.",
    )


# ---------------------------------------------------------------------------- responses
_CLOSED = ConfigDict(extra="forbid")


@with_config(_CLOSED)
class Segment(TypedDict):
    start: int
    end: int
    score: float
    evidence: NotRequired[Annotated[EvidenceOut, Field(description='Only with "explain": true.')]]


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


def class_result(c: ClassSegments, evidence: Sequence[Evidence] | None = None) -> ClassResult:
    """One scored class: its best segments (``end = start + 5``), scores as float64 JSON, and
    their evidence when given (same order)."""
    starts = c.starts.tolist()
    ends = segment_ends(c.starts).tolist()
    scores = c.scores.astype(np.float64).tolist()
    segments: list[Segment] = [
        {"start": a, "end": b, "score": v} for a, b, v in zip(starts, ends, scores, strict=True)
    ]
    for seg, e in zip(segments, evidence or (), strict=False):
        seg["evidence"] = evidence_out(e)
    return {
        "class_id": c.class_id,
        "name": c.name,
        "video_score": c.video_score,
        "segments": segments,
    }


def localize_response(done: Localized, model_version: str) -> LocalizeResponse:
    """The answer of ``POST /localize``."""
    out: LocalizeResponse = {
        "video_id": done.video_id,
        "model_version": model_version,
        "num_segments": done.localization.num_segments,
        "indexed": done.indexed,
        "classes": [
            class_result(c, None if done.evidence is None else done.evidence[k])
            for k, c in enumerate(done.localization.classes)
        ],
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
    relabelled: int
    bank_version: int
    bank: BankCounts
    rescored: NotRequired[
        Annotated[int, Field(description="Kept segments of the class re-scored with the labels.")]
    ]


def labels_response(
    class_id: int, video_id: str, added: int, result: WriteResult, *, rescored: int | None = None
) -> LabelsResponse:
    """The answer of ``POST /classes/{class_id}/labels``: what the write left in the bank, and
    how many kept segments were re-scored (:mod:`service.review`; absent when none could be)."""
    out: LabelsResponse = {
        "class_id": class_id,
        "video_id": video_id,
        "added": added,
        "relabelled": result.replaced,
        "bank_version": result.version,
        "bank": {"positive": result.positive, "negative": result.negative},
    }
    if rescored is not None:
        out["rescored"] = rescored
    return out


@with_config(_CLOSED)
class RemovedSegment(TypedDict):
    start: int
    end: int
    label: int


@with_config(_CLOSED)
class LabelsRemovedResponse(TypedDict):
    class_id: int
    video_id: str
    removed: list[RemovedSegment]
    bank_version: int
    bank: BankCounts
    rescored: NotRequired[
        Annotated[int, Field(description="Kept segments of the class re-scored without them.")]
    ]


def labels_removed_response(
    class_id: int,
    video_id: str,
    starts: Sequence[int],
    result: RemoveResult,
    *,
    rescored: int | None = None,
) -> LabelsRemovedResponse:
    """The answer of ``DELETE /classes/{class_id}/labels``: the segments removed (with the label
    each had), the class's counts after it and how many kept segments were re-scored."""
    out: LabelsRemovedResponse = {
        "class_id": class_id,
        "video_id": video_id,
        "removed": [
            {"start": int(s), "end": segment_end(int(s)), "label": lab}
            for s, lab in zip(starts, result.labels, strict=True)
        ],
        "bank_version": result.version,
        "bank": {"positive": result.positive, "negative": result.negative},
    }
    if rescored is not None:
        out["rescored"] = rescored
    return out


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
    index: Literal["complete", "partial", "unknown"]
    index_detail: str


def readiness(
    model: str, model_version: str, health: StoreHealth, bank_version: int, index: IndexState
) -> Readiness:
    """The answer of ``GET /readyz``: ``degraded`` while the shared store cannot be reached
    (``degraded`` true) or after it lost its data (``index`` partial: rebuild the index)."""
    return {
        "status": "ready" if health.reachable and index.state == "complete" else "degraded",
        "model": model,
        "model_version": model_version,
        "store": health.kind,
        "store_reachable": health.reachable,
        "store_detail": health.detail,
        "bank_version": bank_version,
        "degraded": not health.reachable,
        "index": index.state,
        "index_detail": index.detail,
    }


@with_config(_CLOSED)
class ErrorResponse(TypedDict):
    detail: str
    error: str


def error_body(code: str, detail: str) -> ErrorResponse:
    """Every error answer: what is wrong, and its code."""
    return {"detail": detail, "error": code}
