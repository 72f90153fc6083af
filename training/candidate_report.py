"""Candidate generation report: Recall@K per class and on average (the paper's Table 1 analogue).

For class c, the videos of the rated split are ranked by ``video_probs[:, c]`` and the top K kept.
Recall@K(c) is the fraction of c's positive rated segments that lie in those K videos; the average
is over the classes with at least one positive segment. The reduction factor is the total number of
segments of the split over the mean number kept per class (the segments of the top-K videos).

K is chosen as the largest K with K / num_videos <= 1/20, lowered further while the mean share of
segments kept exceeds 1/20 (so the candidate sets hold at most 1/20 of all segments).

Output: ``candidates.json`` (everything), ``candidates.md`` (tables) and ``recall_at_k.png`` (recall
against K for every generator).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.yt8m import segment_id
from training.metric import CandidateRecall, Ratings, RatingsLike, candidate_recall

MAX_SHARE = 1.0 / 20.0
TARGET_RECALL = 0.99
REPORT_JSON = "candidates.json"
REPORT_MD = "candidates.md"
REPORT_PNG = "recall_at_k.png"


def ratings_from_csr(
    ids: Sequence[str],
    seg_offsets: npt.NDArray[np.int64],
    seg_labels: npt.NDArray[np.int64],
    seg_starts: npt.NDArray[np.int64],
    seg_scores: npt.NDArray[np.float32],
) -> Ratings:
    """The ground truth of a rated split from its CSR rating arrays (see :mod:`training.data`).

    ``ids`` [V] and ``seg_offsets`` i64[V+1] index the ratings ``seg_labels``, ``seg_starts``,
    ``seg_scores`` [R] video by video.
    """
    ratings = Ratings()
    video = np.repeat(np.arange(len(seg_offsets) - 1), np.diff(seg_offsets))
    for v, c, start, score in zip(
        video.tolist(), seg_labels.tolist(), seg_starts.tolist(), seg_scores.tolist(), strict=True
    ):
        ratings.add(int(c), segment_id(ids[v], start), float(score))
    return ratings


def curve_ks(num_videos: int, chosen: int) -> list[int]:
    """The K values of the recall curve: every K up to 100, then ~100 log-spaced up to V."""
    ks = set(range(1, min(num_videos, 100) + 1)) | {chosen, num_videos}
    if num_videos > 100:
        ks |= {int(x) for x in np.unique(np.geomspace(100, num_videos, 100).astype(np.int64))}
    return sorted(k for k in ks if 1 <= k <= num_videos)


def segments_kept(
    video_probs: npt.NDArray[np.float32], num_segments: npt.NDArray[np.int64], classes: np.ndarray
) -> npt.NDArray[np.float64]:
    """Segments in the top-K videos for K = 1..V, averaged over ``classes``: float64 [V]."""
    kept = np.zeros(video_probs.shape[0], dtype=np.float64)
    for cls in classes:
        order = np.argsort(-video_probs[:, cls], kind="stable")
        kept += np.cumsum(num_segments[order])
    return kept / max(len(classes), 1)


def _target_k(
    mean: Mapping[int, float], ks: Sequence[int], kept: npt.NDArray[np.float64], total: int
) -> dict[str, Any]:
    """The smallest K (of ``ks``) whose average recall reaches ``TARGET_RECALL``, and its cost."""
    hit = next((k for k in ks if mean[k] >= TARGET_RECALL - 1e-12), None)
    if hit is None:
        return {"k_at_target": None, "video_share_at_target": None, "reduction_at_target": None}
    return {
        "k_at_target": int(hit),
        "video_share_at_target": float(hit / len(kept)),
        "reduction_at_target": float(total / max(kept[hit - 1], 1e-9)),
    }


def choose_k(num_videos: int, kept_share: npt.NDArray[np.float64] | None = None) -> int:
    """Largest K with K / num_videos <= 1/20 (and mean segment share <= 1/20 when given); >= 1."""
    k = max(1, int(np.floor(num_videos * MAX_SHARE + 1e-9)))
    if kept_share is not None:
        while k > 1 and kept_share[k - 1] > MAX_SHARE + 1e-12:
            k -= 1
    return k


def k_grid(num_videos: int, chosen: int) -> list[int]:
    """A readable set of K values for tables: powers of two, multiples of the chosen K, V."""
    ks = {1, chosen, num_videos}
    k = 1
    while k < num_videos:
        ks.add(k)
        k *= 2
    for m in (2, 4):
        ks.add(min(num_videos, chosen * m))
    return sorted(x for x in ks if 1 <= x <= num_videos)


def _check_inputs(
    generators: Mapping[str, npt.NDArray[np.float32]],
    num_videos: int,
    num_segments: npt.NDArray[np.int64],
    split: str,
) -> None:
    """Raise ``ValueError`` unless every generator scores the same V > 0 videos with C classes."""
    if not generators:
        raise ValueError("no generators to report on")
    if num_videos == 0:
        raise ValueError(f"the rated split {split}/ holds no video")
    if len(num_segments) != num_videos:
        raise ValueError(f"num_segments has {len(num_segments)} rows for {num_videos} videos")
    shapes = {name: tuple(p.shape) for name, p in generators.items()}
    for name, p in generators.items():
        if p.ndim != 2 or p.shape[0] != num_videos:
            raise ValueError(f"generator {name!r}: video_probs {p.shape} != [{num_videos}, C]")
    if len(set(shapes.values())) != 1:
        raise ValueError(f"generators disagree on shapes: {shapes}")


def _generator_entry(
    rec: CandidateRecall,
    k: int,
    ks: Sequence[int],
    grid: Sequence[int],
    kept: npt.NDArray[np.float64],
    total_segments: int,
) -> dict[str, Any]:
    """One generator's report fields from its recall curve ``rec`` (at ``ks``) at the common K.

    ``kept``: float64 [V], segments kept per class at K = 1..V (:func:`segments_kept`).
    """
    at_k = rec.recall[rec.ks.index(k)]
    return {
        "average_recall_at_k": rec.mean[k],
        "micro_recall_at_k": rec.micro[k],
        "min_class_recall_at_k": float(at_k.min()),
        "classes_below_0.99": int(np.sum(at_k < 0.99)),
        "segments_kept_per_class": float(kept[k - 1]),
        "segment_share": float(kept[k - 1] / max(total_segments, 1)),
        "reduction_factor": float(total_segments / max(kept[k - 1], 1e-9)),
        "per_class_recall_at_k": {str(c): float(r) for c, r in rec.per_class(k).items()},
        "curve": {"k": list(ks), "average_recall": [rec.mean[x] for x in ks]},
        "table": {str(g): rec.mean[g] for g in grid},
        **_target_k(rec.mean, ks, kept, total_segments),
    }


def build_report(
    generators: Mapping[str, npt.NDArray[np.float32]],
    video_ids: Sequence[str],
    num_segments: npt.NDArray[np.int64],
    ratings: RatingsLike,
    *,
    split: str = "test",
    class_names: Mapping[int, str] | None = None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report dict for one or more generators evaluated on the same rated split.

    Recall comes from :func:`training.metric.candidate_recall` (the project's one implementation).

    Args:
        generators: name -> video_probs float32 [V, C] (rows in ``video_ids`` order).
        video_ids: the V video ids of the rated split.
        num_segments: i64 [V], whole 5-frame segments per video.
        ratings: the split's ground truth (class -> {segment id: rating}).
        split: the rated split's name, for the record.
        class_names: optional class id -> name for the per-class table.
        extra: optional name -> additional fields (training time, epochs, ...) stored per generator.
    """
    num_videos = len(video_ids)
    _check_inputs(generators, num_videos, num_segments, split)
    total_segments = int(np.sum(num_segments))
    probe = candidate_recall(video_ids, next(iter(generators.values())), ratings, [1])
    classes = probe.classes
    if len(classes) == 0:
        raise ValueError(f"the rated split {split}/ holds no positive rating")
    kept_by_gen = {
        name: segments_kept(probs, num_segments, classes) for name, probs in generators.items()
    }
    # One K for all generators: the most conservative one, so they are compared at equal cost.
    share = np.max(np.stack([k / max(total_segments, 1) for k in kept_by_gen.values()]), axis=0)
    k = choose_k(num_videos, share)
    grid = k_grid(num_videos, k)
    ks = sorted(set(curve_ks(num_videos, k)) | set(grid))
    gens: dict[str, Any] = {}
    for name, probs in generators.items():
        rec = candidate_recall(video_ids, probs, ratings, ks)
        entry = _generator_entry(rec, k, ks, grid, kept_by_gen[name], total_segments)
        gens[name] = {**entry, **dict((extra or {}).get(name, {}))}
    names = {str(int(c)): class_names[int(c)] for c in classes if class_names and c in class_names}
    return {
        "split": split,
        "num_videos": num_videos,
        "total_segments": total_segments,
        "num_classes_evaluated": len(classes),
        "num_positive_segments": int(probe.positives.sum()),
        "k": k,
        "max_share": MAX_SHARE,
        "video_share": k / num_videos,
        "k_rule": "largest K with K/num_videos <= 1/20 and mean segment share <= 1/20",
        "grid": grid,
        "class_names": names,
        "generators": gens,
    }


def format_table(report: Mapping[str, Any]) -> str:
    """The recall table as plain text (one row per generator)."""
    k = report["k"]
    lines = [
        f"Candidate generation on {report['split']}/: {report['num_videos']} videos, "
        f"{report['total_segments']} segments, {report['num_classes_evaluated']} classes with "
        f"positives; K = {k} videos per class",
        f"{'model':<10} {'Recall@K':>9} {'min class':>9} {'<0.99':>6} {'kept/class':>10} "
        f"{'reduction':>9} {'K@0.99':>7}",
    ]
    for name, g in report["generators"].items():
        lines.append(
            f"{name:<10} {g['average_recall_at_k']:>9.4f} {g['min_class_recall_at_k']:>9.4f} "
            f"{g['classes_below_0.99']:>6d} {g['segments_kept_per_class']:>10.1f} "
            f"{g['reduction_factor']:>8.1f}x {g['k_at_target'] or '-'!s:>7}"
        )
    return "\n".join(lines)


def format_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: summary table, recall at several K, per-class recall at K."""
    k = report["k"]
    gens: Mapping[str, Any] = report["generators"]
    names = list(gens)
    out = [
        "# Candidate generation: Recall@K",
        "",
        f"Rated split `{report['split']}/`: {report['num_videos']} videos, "
        f"{report['total_segments']} segments, {report['num_positive_segments']} positive rated "
        f"segments over {report['num_classes_evaluated']} classes.",
        "",
        f"For each class the videos are ranked by `video_probs[c]` and the top **K = {k}** kept "
        f"({report['video_share']:.1%} of the videos). Recall@K is the share of the class's "
        "positive segments inside those videos; reduction = all segments / segments kept.",
        "",
        "| model | Recall@K (avg) | min class | classes < 0.99 | segments kept / class "
        "| reduction | K for 0.99 (reduction) | train s | epochs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, g in gens.items():
        out.append(
            f"| {n} | {g['average_recall_at_k']:.4f} | {g['min_class_recall_at_k']:.4f} | "
            f"{g['classes_below_0.99']} | {g['segments_kept_per_class']:.1f} | "
            f"{g['reduction_factor']:.1f}x | {_target_cell(g)} | "
            f"{g.get('train_seconds', float('nan')):.0f} | "
            f"{g.get('epochs', '')} |"
        )
    out += ["", "## Average recall at several K", ""]
    out.append("| K | " + " | ".join(names) + " |")
    out.append("|---|" + "---|" * len(names))
    for kk in report["grid"]:
        row = " | ".join(f"{gens[n]['table'][str(kk)]:.4f}" for n in names)
        out.append(f"| {kk}{' (chosen)' if kk == k else ''} | {row} |")
    out += ["", f"## Per-class Recall@{k}", ""]
    out.append("| class | name | " + " | ".join(names) + " |")
    out.append("|---|---|" + "---|" * len(names))
    class_names = report.get("class_names", {})
    for c in gens[names[0]]["per_class_recall_at_k"]:
        row = " | ".join(f"{gens[n]['per_class_recall_at_k'][c]:.3f}" for n in names)
        out.append(f"| {c} | {class_names.get(c, '')} | {row} |")
    return "\n".join(out) + "\n"


def _target_cell(g: Mapping[str, Any]) -> str:
    if g.get("k_at_target") is None:
        return "not reached"
    return f"{g['k_at_target']} ({g['reduction_at_target']:.1f}x)"


def plot_recall(report: Mapping[str, Any], path: Path) -> Path:
    """PNG of average recall against K for every generator, the chosen K marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    try:
        for name, g in report["generators"].items():
            ax.plot(g["curve"]["k"], g["curve"]["average_recall"], label=name, lw=1.6)
        k = report["k"]
        ax.axvline(k, color="grey", ls="--", lw=1, label=f"K = {k} (1/20 of videos)")
        ax.axhline(TARGET_RECALL, color="tab:red", ls=":", lw=1, label=f"recall {TARGET_RECALL}")
        ax.set_xscale("log")
        ax.set_xlabel("K (videos kept per class)")
        ax.set_ylabel("average recall of positive segments")
        ax.set_ylim(0, 1.01)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"Candidate generation on {report['split']}/ ({report['num_videos']} videos)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return Path(path)


def write_report(report: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``candidates.json``, ``candidates.md`` and ``recall_at_k.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / REPORT_JSON,
        "markdown": out_dir / REPORT_MD,
        "plot": out_dir / REPORT_PNG,
    }
    paths["json"].write_text(json.dumps(report, indent=1))
    paths["markdown"].write_text(format_markdown(report))
    plot_recall(report, paths["plot"])
    return paths


def report_generators(report: Mapping[str, Any]) -> Sequence[str]:
    """The generator names of a report, in order."""
    return list(report["generators"])
