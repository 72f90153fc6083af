"""Response shapes of the evidence and the review queue (closed TypedDicts, each with the one
function that builds it, like :mod:`service.api.schemas`, which uses :class:`EvidenceOut`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, cast

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict

from service.explain import Evidence, evidence_json
from service.review import ReviewItem
from service.yt8m import segment_end

_CLOSED = ConfigDict(extra="forbid")


@with_config(_CLOSED)
class ContributionOut(TypedDict):
    feature: str
    value: Annotated[float | None, Field(description="The feature's value (null: missing).")]
    contribution: Annotated[float, Field(description="Its TreeSHAP share of the margin.")]


@with_config(_CLOSED)
class NeighbourOut(TypedDict):
    video_id: str
    start: int
    end: int
    label: Literal[0, 1]
    cosine: float


@with_config(_CLOSED)
class NeighboursOut(TypedDict):
    positive: list[NeighbourOut]
    negative: list[NeighbourOut]


@with_config(_CLOSED)
class EvidenceOut(TypedDict):
    margin: Annotated[
        float, Field(description="The booster's raw output: bias + every contribution.")
    ]
    bias: float
    rest: Annotated[float, Field(description="Sum of the contributions not listed.")]
    contributions: list[ContributionOut]
    neighbours: Annotated[
        NeighboursOut,
        Field(description="Nearest labelled segments of the class from other videos."),
    ]


def evidence_out(e: Evidence) -> EvidenceOut:
    """The JSON of one segment's evidence: :func:`service.explain.evidence_json`, the one
    definition of the shape (``ccrl explain --json`` prints the same)."""
    return cast(EvidenceOut, evidence_json(e))


@with_config(_CLOSED)
class ReviewSegment(TypedDict):
    video_id: str
    start: int
    end: int
    score: float
    margin: Annotated[float, Field(description="The booster's margin; 0 = decision boundary.")]
    kept: Annotated[
        bool, Field(description="Its embedding is kept: it can be labelled without frames.")
    ]
    evidence: Annotated[
        EvidenceOut | None, Field(description="With explain=true, for kept segments.")
    ]


@with_config(_CLOSED)
class ReviewBank(TypedDict):
    positive: int
    negative: int


@with_config(_CLOSED)
class ReviewResponse(TypedDict):
    class_id: int
    name: str
    strategy: Literal["uncertain", "top_unlabelled"]
    bank: Annotated[ReviewBank, Field(description="The class's labels in the bank.")]
    segments: list[ReviewSegment]


def review_response(
    class_id: int,
    name: str,
    strategy: Literal["uncertain", "top_unlabelled"],
    positive: int,
    negative: int,
    items: Sequence[ReviewItem],
) -> ReviewResponse:
    """The answer of ``GET /classes/{class_id}/review``."""
    return {
        "class_id": class_id,
        "name": name,
        "strategy": strategy,
        "bank": {"positive": positive, "negative": negative},
        "segments": [
            {
                "video_id": it.video_id,
                "start": it.start,
                "end": segment_end(it.start),
                "score": it.score,
                "margin": it.margin,
                "kept": it.kept,
                "evidence": None if it.evidence is None else evidence_out(it.evidence),
            }
            for it in items
        ],
    }
