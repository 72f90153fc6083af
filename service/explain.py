"""Evidence for a score: why a segment scored high for a class (numpy and xgboost only).

Two readings of one (segment, class) pair, both cheap because CCRL's inputs are readable:

- **Feature contributions**: XGBoost's exact TreeSHAP (``pred_contribs``) on the pair's feature row,
  only for the rows asked about. Each feature's contribution plus the bias (the booster's expected
  margin) sums to the pair's margin, the booster's raw output before its objective's link (for
  ``binary:logistic`` the score is ``sigmoid(margin)``; for the ``rank:*`` objectives the score is
  the margin). The top ones by absolute value are listed; ``rest`` is the sum of the others, so
  ``bias + sum(listed) + rest == margin`` exactly.
- **Nearest labelled segments**: the class's labelled bank entries from other videos (the paper's
  ``u != v``, as in the similarity features), by cosine to the segment's embedding: the closest
  positives and the closest negatives.

Used by ``POST /localize`` with ``"explain": true`` (:mod:`service.localize`), by the review queue
(:mod:`service.review`) and by ``ccrl explain`` (:mod:`service.explain_offline`). Nothing here runs
for a request that does not ask for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from service.bank import ClassBank, unit_rows
from service.features import FEATURE_TYPES
from service.scorer import Localization
from service.yt8m import SEGMENT_FRAMES, segment_end

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

TOP_FEATURES = 5
"""Feature contributions listed per segment (the largest by absolute value)."""
NEIGHBOURS = 3
"""Nearest labelled positives, and negatives, listed per segment."""


@dataclass(frozen=True)
class Contribution:
    """One feature's share of a margin: its name, its value in the row (None when missing) and
    its TreeSHAP contribution (margin units)."""

    feature: str
    value: float | None
    contribution: float


@dataclass(frozen=True)
class Neighbour:
    """A labelled bank segment of the class: where it is, its label (1/0), its cosine."""

    video_id: str
    start: int
    label: int
    cosine: float


@dataclass(frozen=True)
class Evidence:
    """Why one (segment, class) pair scored what it did.

    Attributes:
        margin: the booster's raw output for the pair (``bias + sum of every contribution``).
        bias: the booster's expected margin (TreeSHAP's bias term).
        rest: the sum of the contributions not listed in ``contributions``.
        contributions: the largest contributions by absolute value, largest first.
        positives: the nearest labelled positives of the class from other videos, closest first.
        negatives: the same for the labelled negatives.
    """

    margin: float
    bias: float
    rest: float
    contributions: tuple[Contribution, ...]
    positives: tuple[Neighbour, ...] = ()
    negatives: tuple[Neighbour, ...] = ()


def evidence_json(e: Evidence) -> dict[str, Any]:
    """The JSON of one segment's evidence (``EvidenceOut`` of the API, ``ccrl explain --json``)."""

    def near(found: Sequence[Neighbour]) -> list[dict[str, Any]]:
        return [
            {
                "video_id": n.video_id,
                "start": n.start,
                "end": segment_end(n.start),
                "label": 1 if n.label else 0,
                "cosine": n.cosine,
            }
            for n in found
        ]

    return {
        "margin": e.margin,
        "bias": e.bias,
        "rest": e.rest,
        "contributions": [
            {"feature": c.feature, "value": c.value, "contribution": c.contribution}
            for c in e.contributions
        ],
        "neighbours": {"positive": near(e.positives), "negative": near(e.negatives)},
    }


# ---------------------------------------------------------------------------- contributions
def pair_contributions(booster: xgb.Booster, x: F32) -> tuple[F32, F32]:
    """TreeSHAP of feature rows: float32 [n, NF] -> (contributions [n, NF], bias [n]).

    ``contributions[i].sum() + bias[i]`` is row i's margin (up to float32 rounding).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    nf = booster.num_features()
    if x.ndim != 2 or x.shape[1] != nf:
        raise ValueError(f"feature rows must be [n, {nf}], got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        return np.zeros((0, nf), np.float32), np.zeros(0, np.float32)
    dm = xgb.DMatrix(  # one thread: on a busy machine an OpenMP team costs more than the copy
        x,
        feature_names=booster.feature_names,
        feature_types=list(booster.feature_types or FEATURE_TYPES),
        enable_categorical=True,
        missing=np.nan,
        nthread=1,
    )
    phi = np.asarray(booster.predict(dm, pred_contribs=True), dtype=np.float32)
    return phi[:, :nf], phi[:, nf]


def top_contributions(
    phi: F32, bias: F32, x: F32, names: Sequence[str], top: int = TOP_FEATURES
) -> list[Evidence]:
    """One :class:`Evidence` (no neighbours yet) per row of contributions ``phi [n, NF]``."""
    order = np.argsort(-np.abs(phi), axis=1, kind="stable")[:, :top]  # [n, top]
    listed = np.take_along_axis(phi, order, axis=1)
    total = phi.astype(np.float64).sum(axis=1)
    rests = (total - listed.astype(np.float64).sum(axis=1)).tolist()
    margins = (total + bias).tolist()
    values = np.take_along_axis(x, order, axis=1).tolist()
    out = []
    for i, (cols, vals, cons) in enumerate(
        zip(order.tolist(), values, listed.tolist(), strict=True)
    ):
        parts = tuple(
            Contribution(names[j], None if v != v else v, c)  # v != v: NaN, a missing value
            for j, v, c in zip(cols, vals, cons, strict=True)
        )
        out.append(Evidence(margins[i], float(bias[i]), rests[i], parts))
    return out


# ---------------------------------------------------------------------------- neighbours
def class_entries(bank: ClassBank, class_id: int, video_id: str | None = None) -> I64:
    """Indices (int64 [n]) of the bank entries of ``class_id``, without those of ``video_id``."""
    mask = bank.emb_class == class_id
    if video_id is not None:
        mask &= bank.emb_video != video_id
    return np.flatnonzero(mask).astype(np.int64)


def nearest_labelled(
    bank: ClassBank,
    class_id: int,
    embeddings: F32,
    video_id: str | None,
    k: int = NEIGHBOURS,
) -> list[tuple[tuple[Neighbour, ...], tuple[Neighbour, ...]]]:
    """For each row of ``embeddings`` (float32 [n, D]): the ``k`` nearest labelled positives and
    negatives of ``class_id`` from videos other than ``video_id``, by cosine, closest first."""
    n = int(embeddings.shape[0])
    idx = class_entries(bank, class_id, video_id)
    if n == 0 or idx.size == 0:
        return [((), ())] * n
    sims = unit_rows(embeddings) @ bank.emb[idx].T  # [n, m]
    labels = bank.emb_label[idx]
    videos, starts = bank.emb_video[idx].tolist(), bank.emb_start[idx].tolist()
    found = []
    for label in (1, 0):
        cols = np.flatnonzero(labels == label)
        best = cols[np.argsort(-sims[:, cols], axis=1, kind="stable")[:, :k]]  # [n, <=k]
        cos = np.take_along_axis(sims, best, axis=1).tolist()
        found.append(
            [
                tuple(
                    Neighbour(str(videos[j]), int(starts[j]), label, c)
                    for j, c in zip(row, cs, strict=True)
                )
                for row, cs in zip(best.tolist(), cos, strict=True)
            ]
        )
    return list(zip(found[0], found[1], strict=True))


def with_neighbours(
    evidence: Sequence[Evidence], near: Sequence[tuple[tuple[Neighbour, ...], ...]]
) -> list[Evidence]:
    """``evidence`` with the neighbours of :func:`nearest_labelled` filled in, row by row."""
    return [
        Evidence(e.margin, e.bias, e.rest, e.contributions, pos, neg)
        for e, (pos, neg) in zip(evidence, near, strict=True)
    ]


# ---------------------------------------------------------------------------- one video
def explain_rows(
    booster: xgb.Booster,
    names: Sequence[str],
    bank: ClassBank,
    class_id: int,
    x: F32,
    embeddings: F32,
    video_id: str | None,
    *,
    top: int = TOP_FEATURES,
    k: int = NEIGHBOURS,
) -> list[Evidence]:
    """Evidence of n pairs of one class: feature rows float32 [n, NF] and the segments'
    embeddings float32 [n, D] (their video ``video_id``, left out of the neighbours)."""
    phi, bias = pair_contributions(booster, x)
    ev = top_contributions(phi, bias, x, names, top)
    return with_neighbours(ev, nearest_labelled(bank, class_id, embeddings, video_id, k))


def explain_localization(
    booster: xgb.Booster,
    names: Sequence[str],
    loc: Localization,
    bank: ClassBank,
    video_id: str | None,
    *,
    top: int = TOP_FEATURES,
    k: int = NEIGHBOURS,
) -> list[list[Evidence]]:
    """The evidence of every returned segment of a scored video: one list per entry of
    ``loc.classes`` (same order), one :class:`Evidence` per returned segment (same order).

    Only the returned rows of the pair matrix go through TreeSHAP (``loc.pairs`` rows
    ``k * S + s``), in one call for the whole video.
    """
    if loc.pairs is None or loc.segment_embeddings is None:
        raise ValueError("the localization kept no pair matrix / embeddings to explain")
    num_seg = loc.num_segments
    segs = [c.starts // SEGMENT_FRAMES for c in loc.classes]  # returned segments, per class
    rows = [k_ * num_seg + s for k_, s in enumerate(segs)]  # their rows in the pair matrix
    flat = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    x = loc.pairs.x[flat]
    phi, bias = pair_contributions(booster, x)
    ev = top_contributions(phi, bias, x, names, top)
    out, at = [], 0
    for c, s in zip(loc.classes, segs, strict=True):
        near = nearest_labelled(bank, c.class_id, loc.segment_embeddings[s], video_id, k)
        out.append(with_neighbours(ev[at : at + len(s)], near))
        at += len(s)
    return out
