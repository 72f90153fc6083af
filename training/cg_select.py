"""Candidate generation chosen from data: how many videos each class keeps, chosen on the holdout.

The paper keeps, for each class, the top K videos by the video-level score, with K such that about
1/20 of the corpus is scored (100,000 segments of 2.2 M). That rule is only as good as the video
model: on a corpus whose rated classes are often minor topics of their videos it kept 0.80 of the
positives and cost CCRL 0.155 mAP (issue 11). Here the rule is measured instead of assumed:

- the data: the cross-fitted holdout scores of the rated ``validate/`` pairs
  (:mod:`training.crossfit`; the GBM that scored a pair never saw its video) and the generator's
  ``video_probs`` of every ``validate/`` video (trained on ``train/`` only, so out of sample);
- the candidates: **top-K** with K a share of the videos (1/20 of them, the paper's rule, and
  growing from there: :data:`SHARES`, up to every video, i.e. no CG), and a **threshold on the
  video score** (a video is kept for class c when ``video_probs[c]`` reaches it, so a frequent class
  keeps more videos than a rare one; :func:`thresholds`); no CG is the last candidate of both;
- the cost: segments kept per class, at most :data:`SEGMENT_BUDGET` (the challenge's 100,000);
- the choice: the highest holdout mAP; among the candidates within :data:`TOLERANCE` of it, the
  one that keeps the fewest segments. So CG is kept only where it costs no holdout mAP (when the
  1/20 rule loses positives on the holdout, K grows until it does not, at the limit no CG), and
  where it raises mAP (it drops rated negatives of videos outside a class's top K) that is kept.

The service chooses its per-video candidate classes the same way (:func:`choose_service`): for
each holdout video the top ``max_classes`` classes by video score, among those at least
``min_video_score``; the smallest ``max_classes`` and then the largest ``min_video_score`` whose
holdout mAP is within :data:`TOLERANCE` of the best.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

SEGMENT_BUDGET = 100_000
"""Segments per class a submission may list (the challenge's cap)."""
PAPER_SHARE = 1.0 / 20.0
SHARES: tuple[float, ...] = (1 / 20, 1 / 15, 1 / 10, 1 / 7, 1 / 5, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 1.0)
"""Top-K candidates, as the share of the videos kept per class (1.0 = no CG)."""


def thresholds(video_probs: F32) -> list[float]:
    """Video-score threshold candidates: the scores that keep each share of :data:`SHARES` of
    the (video, class) cells on average (generators differ in calibration), then 0.0 (no CG)."""
    return [float(np.quantile(video_probs, 1.0 - s)) for s in SHARES if s < 1.0] + [0.0]


TOLERANCE = 0.001
"""Holdout mAP within this of the best counts as no cost."""
MAX_CLASSES: tuple[int, ...] = (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 100, 200, 500, 1000)
MIN_SCORES: tuple[float, ...] = (0.0, 1e-4, 1e-3, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


@dataclass(frozen=True)
class CgRule:
    """How candidate generation keeps videos per class.

    ``kind`` is ``top_k`` (``value`` = share of the videos kept per class; 1.0 keeps all) or
    ``min_video_score`` (``value`` = the threshold on ``video_probs[c]``; 0.0 keeps all).
    """

    kind: str
    value: float

    @property
    def is_none(self) -> bool:
        """True when the rule keeps every video (no CG)."""
        return (self.kind == "top_k" and self.value >= 1.0) or (
            self.kind == "min_video_score" and self.value <= 0.0
        )

    def k(self, num_videos: int) -> int:
        """Videos kept per class by a ``top_k`` rule on a corpus of ``num_videos``."""
        return max(1, min(num_videos, math.ceil(self.value * num_videos - 1e-9)))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> CgRule:
        kind = str(d["kind"])
        if kind not in ("top_k", "min_video_score"):
            raise ValueError(f"unknown CG rule {kind!r} (expected top_k or min_video_score)")
        return CgRule(kind, float(d["value"]))

    def label(self) -> str:
        if self.is_none:
            return "no CG"
        if self.kind == "top_k":
            return f"top {self.value:.3g} of the videos"
        return f"video score >= {self.value:g}"


def keep_mask(
    rule: CgRule, video_probs: F32, num_segments: I64, budget: int = SEGMENT_BUDGET
) -> Mask:
    """bool [V, R]: video v kept for class column r, within ``budget`` segments per class.

    Args:
        video_probs: float32 [V, R] the generator's video scores of the ranked classes.
        num_segments: int64 [V] segments per video.
    """
    v, r = video_probs.shape
    order = np.argsort(-video_probs, axis=0, kind="stable")  # [V, R] best video first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(v)[:, None].repeat(r, 1), axis=0)
    if rule.kind == "top_k":
        keep = rank < rule.k(v)
    else:
        keep = video_probs >= rule.value
    cum = np.cumsum(num_segments[order], axis=0)  # segments of the top-n videos, [V, R]
    within = np.take_along_axis(cum, rank, axis=0) <= budget
    return np.asarray(keep & within)


@dataclass
class HoldoutPairs:
    """The rated holdout pairs and the generator's video scores of their videos.

    Attributes:
        scores: float32 [N] cross-fitted CCRL scores; class_ids: int64 [N]; video: int64 [N]
            (row of ``video_probs``); tokens: [N] segment ids; labels: float32 [N] 0/1.
        video_probs: float32 [V, C] the generator's scores of every holdout video (full
            vocabulary); num_segments: int64 [V].
        classes: int64 [R] the ranked classes (the columns that CG and the service consider).
    """

    scores: F32
    class_ids: I64
    video: I64
    tokens: Sequence[str]
    labels: F32
    video_probs: F32
    num_segments: I64
    classes: I64

    def kept_pairs(self, keep: Mask) -> Mask:
        """bool [N] for a [V, R] keep mask."""
        col = np.searchsorted(self.classes, self.class_ids)
        return np.asarray(keep[self.video, col])

    def evaluate(self, pair_keep: Mask) -> dict[str, float]:
        """Holdout mAP and mean recall of positives when only ``pair_keep`` pairs are listed."""
        from training.metric import mean_average_precision

        ratings: dict[int, dict[str, float]] = {}
        preds: dict[int, list[str]] = {}
        recall: list[float] = []
        for c in np.unique(self.class_ids).tolist():
            idx = np.flatnonzero(self.class_ids == c)
            ratings[c] = {self.tokens[i]: float(self.labels[i]) for i in idx.tolist()}
            kept = idx[pair_keep[idx]]
            order = kept[np.argsort(-self.scores[kept], kind="stable")]
            preds[c] = [self.tokens[i] for i in order.tolist()]
            pos = self.labels[idx] > 0.5
            if pos.any():
                recall.append(float(pair_keep[idx][pos].mean()))
        return {
            "map": mean_average_precision(preds, ratings),
            "recall": float(np.mean(recall)) if recall else 1.0,
        }


def _pick(rows: list[dict[str, Any]], cost: str, tolerance: float) -> dict[str, Any]:
    """The cheapest row (lowest ``cost``) whose map is within ``tolerance`` of the best."""
    best = max(r["map"] for r in rows)
    ok = [r for r in rows if r["map"] >= best - tolerance - 1e-12]
    return min(ok, key=lambda r: (r[cost], -r["map"]))


def cg_curve(h: HoldoutPairs) -> list[dict[str, Any]]:
    """Holdout mAP, recall and segments per class of every candidate rule (within the budget)."""
    vp = h.video_probs[:, h.classes]
    rows: list[dict[str, Any]] = []
    rules = [CgRule("top_k", s) for s in SHARES]
    rules += [CgRule("min_video_score", t) for t in thresholds(vp)]
    for rule in rules:
        keep = keep_mask(rule, vp, h.num_segments, budget=10**12)
        segs = float((keep * h.num_segments[:, None]).sum(0).mean())
        if segs > SEGMENT_BUDGET:
            continue
        res = h.evaluate(h.kept_pairs(keep))
        rows.append(
            {
                **rule.to_dict(),
                "label": rule.label(),
                "videos_per_class": float(keep.sum(0).mean()),
                "segments_per_class": segs,
                **res,
            }
        )
    return rows


def choose_cg(h: HoldoutPairs, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """The CG rule chosen on the holdout, and the whole curve (for the manifest and the plot)."""
    rows = cg_curve(h)
    pick = _pick(rows, "segments_per_class", tolerance)
    none = next(r for r in rows if CgRule.from_dict(r).is_none)
    paper = next(r for r in rows if r["kind"] == "top_k" and r["value"] == SHARES[0])
    return {
        "rule": {"kind": pick["kind"], "value": pick["value"]},
        "label": pick["label"],
        "holdout_map": pick["map"],
        "holdout_recall": pick["recall"],
        "holdout_map_no_cg": none["map"],
        "holdout_map_paper_rule": paper["map"],
        "holdout_recall_paper_rule": paper["recall"],
        "holdout_videos": int(h.video_probs.shape[0]),
        "tolerance": tolerance,
        "segment_budget": SEGMENT_BUDGET,
        "curve": rows,
    }


def service_keep(video_probs: F32, max_classes: int, min_score: float) -> Mask:
    """bool [V, R]: class column r is among video v's top ``max_classes`` (score >= min)."""
    order = np.argsort(-video_probs, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(video_probs.shape[1])[None, :], axis=1)
    return np.asarray((rank < max_classes) & (video_probs >= min_score))


def choose_service(h: HoldoutPairs, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """``max_classes`` and ``min_video_score`` of the service, chosen on the holdout."""
    vp = h.video_probs[:, h.classes]
    r = len(h.classes)
    sizes = sorted({m for m in MAX_CLASSES if m < r} | {r})
    by_m = [{"max_classes": m, **h.evaluate(h.kept_pairs(service_keep(vp, m, 0.0)))} for m in sizes]
    m = int(_pick(by_m, "max_classes", tolerance)["max_classes"])
    by_t = [
        {"min_video_score": t, "cost": -t, **h.evaluate(h.kept_pairs(service_keep(vp, m, t)))}
        for t in MIN_SCORES
    ]
    best_map = max(x["map"] for x in by_m)
    ok = [x for x in by_t if x["map"] >= best_map - tolerance - 1e-12] or by_t[:1]
    t = float(max(ok, key=lambda x: x["min_video_score"])["min_video_score"])
    chosen = next(x for x in by_t if x["min_video_score"] == t)
    for x in by_t:
        del x["cost"]
    return {
        "max_classes": m,
        "min_video_score": t,
        "holdout_map": chosen["map"],
        "holdout_recall": chosen["recall"],
        "holdout_map_all_classes": by_m[-1]["map"],
        "ranked_classes": r,
        "tolerance": tolerance,
        "by_max_classes": by_m,
        "by_min_video_score": by_t,
    }


def plot_cg(choice: Mapping[str, Any], path: Path) -> Path:
    """PNG: holdout mAP and recall against the segments kept per class, for both rule kinds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = choice["curve"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    try:
        for ax, key, label in ((axes[0], "map", "holdout mAP"), (axes[1], "recall", "recall")):
            for kind, style in (("top_k", "o-"), ("min_video_score", "s--")):
                pts = sorted((r["segments_per_class"], r[key]) for r in rows if r["kind"] == kind)
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, style, ms=4, label=kind.replace("_", " "))
            pick = next(
                r for r in rows if {"kind": r["kind"], "value": r["value"]} == choice["rule"]
            )
            ax.plot([pick["segments_per_class"]], [pick[key]], "r*", ms=14, label="chosen")
            ax.set_xscale("log")
            ax.set_xlabel("segments kept per class (holdout)")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(loc="lower right", fontsize=8)
        axes[0].axhline(choice["holdout_map_no_cg"], color="grey", ls=":", lw=1)
        fig.suptitle(f"Candidate generation chosen on the holdout: {choice['label']}")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return Path(path)
