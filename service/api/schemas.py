"""Request and response schemas of the HTTP API (pydantic; also the OpenAPI documentation).

FRAMES fields stay untyped JSON here (a list of lists, or a ``{b64, dtype, shape}`` object) and are
decoded with numpy by :mod:`service.decode`, never number by number in Python.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.yt8m import MAX_FRAMES

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


# ---------------------------------------------------------------------------- responses (docs)
class Segment(BaseModel):
    start: int
    end: int
    score: float


class ClassResult(BaseModel):
    class_id: int
    name: str
    video_score: float
    segments: list[Segment]


class LocalizeResponse(BaseModel):
    video_id: str | None
    model_version: str
    num_segments: int
    indexed: bool = Field(description="True when the scores entered the corpus index.")
    classes: list[ClassResult]


class IndexedSegment(BaseModel):
    video_id: str
    start: int
    end: int
    score: float


class TopSegmentsResponse(BaseModel):
    class_id: int
    name: str
    total: int
    segments: list[IndexedSegment]


class BankCounts(BaseModel):
    positive: int
    negative: int


class ClassInfoOut(BaseModel):
    class_id: int
    name: str
    bank: BankCounts


class ClassesResponse(BaseModel):
    classes: list[ClassInfoOut]


class LabelsResponse(BaseModel):
    class_id: int
    video_id: str
    added: int
    bank_version: int
    bank: BankCounts


class ErrorResponse(BaseModel):
    detail: str
    error: str
