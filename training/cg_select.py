"""Candidate generation chosen from data: how many videos each class keeps, chosen on the holdout.

The paper keeps, for each class, the top K videos by the video-level score, with K such that about
1/20 of the corpus is scored (100,000 segments of 2.2 M). That rule is only as good as the video
model: on a corpus whose rated classes are often minor topics of their videos it kept 0.80 of the
positives and cost CCRL 0.155 mAP (issue 11). Here the rule is measured instead of assumed:

- the data: the cross-fitted holdout scores of the rated ``validate/`` pairs
  (:mod:`training.crossfit`; the GBM that scored a pair never saw its video) and the generator's
  ``video_probs`` of every ``validate/`` video (trained on ``train/`` only, so out of sample);
- the candidates: top-K with K a share of the videos, 1/20 (the paper's rule) and growing from
  there (:data:`SHARES`) up to every video, i.e. no CG; K = floor(share x videos) on any corpus;
- the cost: segments kept per class, at most :data:`SEGMENT_BUDGET` (the challenge's 100,000);
- the choice: the highest holdout mAP; among the shares within :data:`TOLERANCE` of it, the
  smallest (when the 1/20 rule loses positives on the holdout, K grows until it does not, at the
  limit no CG; where CG raises mAP, dropping the rated negatives of videos outside a class's top
  K, the gain is kept); then :data:`SAFETY` times that share (the next share of the grid, at most
  every video): a test split's rarest positives rank lower than the holdout's. On the hard
  profile the holdout lost no positive at 1/3 of the videos where the test split lost 0.9% of
  them and 0.007 mAP; at 2/3 it lost none.

The service chooses its per-video candidate classes the same way (:func:`choose_service`): for
each holdout video the top ``max_classes`` classes by video score, among those at least
``min_video_score``; the smallest ``max_classes``, then the largest ``min_video_score``, whose
holdout mAP is within :data:`TOLERANCE` of the best, with the same margin.
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
"""The paper's rule: K = 1/20 of the videos."""
SHARES: tuple[float, ...] = (1 / 20, 1 / 15, 1 / 10, 1 / 7, 1 / 5, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 1.0)
"""Top-K candidates, as the share of the videos kept per class (1.0 = no CG)."""
TOLERANCE = 0.001
"""Holdout mAP within this of the best counts as no cost."""
SAFETY = 2.0
"""The share used is this many times the smallest share that costs no holdout mAP."""
MAX_CLASSES: tuple[int, ...] = (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 100, 200, 500, 1000)
MIN_SCORES: tuple[float, ...] = (0.0, 1e-4, 1e-3, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def videos_per_class(
    num_videos: int, share: float, mean_segments: float | None = None, budget: int = SEGMENT_BUDGET
) -> int:
    """K = the largest K with K / num_videos <= share, at least 1, and at most the videos whose
    mean number of segments fits ``budget`` (when ``mean_segments`` is given)."""
    k = max(1, min(num_videos, math.floor(share * num_videos + 1e-9)))
    if mean_segments and mean_segments > 0:
        k = max(1, min(k, int(budget // mean_segments)))
    return k


def top_k_mask(video_probs: F32, k: int) -> Mask:
    """bool [V, R]: True where the video is among the top ``k`` of the class column (stable)."""
    mask = np.zeros(video_probs.shape, bool)
    top_rows = np.argsort(-video_probs, axis=0, kind="stable")[:k]  # [K, R]
    mask[top_rows, np.arange(video_probs.shape[1])[None, :]] = True
    return mask


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
    """Holdout mAP, recall and segments per class of every share of :data:`SHARES` whose
    segments fit the budget."""
    vp = h.video_probs[:, h.classes]
    v = vp.shape[0]
    rows: list[dict[str, Any]] = []
    for share in SHARES:
        k = videos_per_class(v, share)
        keep = top_k_mask(vp, k)
        segs = float((keep * h.num_segments[:, None]).sum(0).mean())
        if segs > SEGMENT_BUDGET:
            continue
        rows.append(
            {
                "video_share": share,
                "k": k,
                "segments_per_class": segs,
                **h.evaluate(h.kept_pairs(keep)),
            }
        )
    return rows


def choose_cg(h: HoldoutPairs, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """The share of the videos CG keeps per class, chosen on the holdout, and the whole curve
    (for the manifest and the plot)."""
    rows = cg_curve(h)
    edge = _pick(rows, "segments_per_class", tolerance)
    shares = [r["video_share"] for r in rows]
    safe = min(1.0, SAFETY * edge["video_share"])
    pick = rows[next((i for i, s in enumerate(shares) if s >= safe - 1e-9), len(rows) - 1)]
    best = max(r["map"] for r in rows)
    return {
        "video_share": pick["video_share"],
        "edge_share": edge["video_share"],
        "safety": SAFETY,
        "no_cg": pick["video_share"] >= 1.0,
        "holdout_map": pick["map"],
        "holdout_recall": pick["recall"],
        "holdout_best_map": best,
        "holdout_map_no_cg": rows[-1]["map"],
        "holdout_map_paper_rule": rows[0]["map"],
        "holdout_recall_paper_rule": rows[0]["recall"],
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
    """``max_classes`` and ``min_video_score`` of the service, chosen on the holdout: the smallest
    ``max_classes`` and then the largest ``min_video_score`` within ``tolerance`` of the best
    holdout mAP, with the same :data:`SAFETY` margin as CG (``max_classes`` times it, the score
    floor divided by it, on their grids)."""
    vp = h.video_probs[:, h.classes]
    r = len(h.classes)
    sizes = sorted({m for m in MAX_CLASSES if m < r} | {r})
    by_m = [{"max_classes": m, **h.evaluate(h.kept_pairs(service_keep(vp, m, 0.0)))} for m in sizes]
    edge_m = int(_pick(by_m, "max_classes", tolerance)["max_classes"])
    m = next((x for x in sizes if x >= SAFETY * edge_m), r)
    by_t = [
        {"min_video_score": t, **h.evaluate(h.kept_pairs(service_keep(vp, m, t)))}
        for t in MIN_SCORES
    ]
    best_map = max(x["map"] for x in by_m)
    ok = [x["min_video_score"] for x in by_t if x["map"] >= best_map - tolerance - 1e-12]
    edge_t = max(ok, default=0.0)
    t = max((x for x in MIN_SCORES if x <= edge_t / SAFETY), default=0.0)
    chosen = next(x for x in by_t if x["min_video_score"] == t)
    return {
        "max_classes": m,
        "min_video_score": t,
        "edge_max_classes": edge_m,
        "edge_min_video_score": edge_t,
        "holdout_map": chosen["map"],
        "holdout_recall": chosen["recall"],
        "holdout_map_all_classes": by_m[-1]["map"],
        "ranked_classes": r,
        "tolerance": tolerance,
        "by_max_classes": by_m,
        "by_min_video_score": by_t,
    }


def plot_cg(choice: Mapping[str, Any], path: Path) -> Path:
    """PNG: holdout mAP and recall against the share of the videos kept per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = choice["curve"]
    xs = [r["video_share"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    try:
        ax.plot(xs, [r["map"] for r in rows], "o-", label="holdout mAP")
        ax.plot(xs, [r["recall"] for r in rows], "s--", label="holdout recall")
        ax.axvline(choice["video_share"], color="tab:red", lw=1, label="chosen")
        ax.axvline(PAPER_SHARE, color="grey", ls=":", lw=1, label="1/20 (the paper)")
        ax.set_xscale("log")
        ax.set_xlabel("share of the videos kept per class (1 = no CG)")
        ax.set_ylabel("holdout mAP / recall of positives")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
        ax.set_title(
            f"Candidate generation chosen on the holdout ({choice['holdout_videos']} videos): "
            f"share {choice['video_share']:.3g}"
        )
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return Path(path)
