"""The challenge metric: segment mAP and candidate recall, and the ``ccrl score`` command.

One implementation, used everywhere (training reports, benchmarks, tests, ``ccrl score``).

The metric (docs/contracts.md, "Metric"):

- A rating belongs to a (segment, class) pair. ``ratings`` maps class id -> {segment id: 0/1}
  (a :class:`Ratings`, or any ``Mapping[int, Mapping[str, int | float]]``; a value >= 0.5 is a
  positive rating).
- For a class c, the submitted ranked list is first truncated to its first ``top`` entries (the
  list as submitted holds at most ``top`` entries; extra entries are ignored), then every segment
  not rated *for c* is removed (it neither helps nor hurts; that includes segments rated only for
  another class), then repeated tokens are dropped, keeping the first occurrence only.
- ``AP(c) = (1 / N_c) * sum_k Prec(k) * rel(k)`` over the kept ranks k, where ``N_c`` is the number
  of positive ratings of c in the ground truth: a positive that never made the list still counts.
- ``mAP`` averages AP over the classes that have at least one positive rating; such a class missing
  from the submission scores 0, and submitted classes without a positive rating are ignored.

Candidate generation is judged by recall: the fraction of the positive segments of c that lie in
the top-K videos for c (:func:`candidate_recall`, :func:`recall_at_k`).

The Kaggle submission file (writing and reading it) is ``training/submission.py``; the scoring
functions take its rows as they stream (:func:`training.submission.iter_submission`) or any mapping.
"""

from __future__ import annotations

import logging
import statistics
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from service.yt8m import SEGMENT_FRAMES, segment_id
from training.submission import Predictions, SubmissionError, iter_submission, prediction_items

if TYPE_CHECKING:
    from service.yt8m import Video

log = logging.getLogger(__name__)

TOP = 100_000
"""The challenge's cap: at most 100,000 segments per class are scored."""

POSITIVE_THRESHOLD = 0.5
"""A rating value ``>= POSITIVE_THRESHOLD`` is positive (the data uses exactly 1.0 and 0.0)."""

RatingsLike = Mapping[int, Mapping[str, float]]


def _is_positive(value: float) -> bool:
    return bool(value >= POSITIVE_THRESHOLD)


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------


class Ratings(Mapping[int, Mapping[str, int]]):
    """The ground truth: class id -> {segment id ``"vid:start"``: 1 (positive) or 0 (negative)}.

    Build it from segment-rated videos (``Ratings(videos)`` or :meth:`from_videos`, using
    ``video.segment_labels / segment_starts / segment_scores``) or from a plain mapping
    (``Ratings({3: {"abc:5": 1}})``). Rating values ``>= 0.5`` are positive.

    If the same (segment, class) pair is rated twice, the MAX is kept (a positive wins) and
    :attr:`duplicates` counts the repeats. Ratings whose start lies past the video's last whole
    segment are kept (they are ground truth: a positive there can never be retrieved, but counts
    in N_c) and counted in :attr:`out_of_range`, with one warning; pass ``drop_out_of_range=True``
    to skip them instead.

    It is a read-only ``Mapping[int, Mapping[str, int]]`` over every rated class (including classes
    whose ratings are all negative); unknown classes give an empty mapping via :meth:`rated`.
    """

    def __init__(
        self,
        source: Iterable[Video] | RatingsLike | None = None,
        *,
        drop_out_of_range: bool = False,
        progress: bool = False,
    ) -> None:
        self._by_class: dict[int, dict[str, int]] = {}
        self._num_positives: dict[int, int] = {}
        self.duplicates = 0
        """Number of (segment, class) ratings seen more than once (the max was kept)."""
        self.out_of_range = 0
        """Number of ratings whose start is past the video's last whole segment."""
        self.num_videos = 0
        """Number of videos read (0 when built from a mapping)."""
        if source is None:
            return
        if isinstance(source, Mapping):
            for c, rated in source.items():
                for seg, value in rated.items():
                    self.add(int(c), str(seg), float(value))
        else:
            self._add_videos(source, drop_out_of_range=drop_out_of_range, progress=progress)

    @classmethod
    def from_videos(
        cls, videos: Iterable[Video], *, drop_out_of_range: bool = False, progress: bool = False
    ) -> Ratings:
        """Ratings of an iterable of ``service.yt8m.Video`` (unrated videos add none)."""
        return cls(videos, drop_out_of_range=drop_out_of_range, progress=progress)

    def add(self, class_id: int, segment: str, value: float) -> None:
        """Rate ``segment`` for ``class_id``; a repeated pair keeps the max of the two ratings."""
        if value != value:  # NaN
            raise ValueError(f"rating of {segment!r} for class {class_id} is NaN")
        label = 1 if _is_positive(value) else 0
        rated = self._by_class.setdefault(class_id, {})
        old = rated.get(segment)
        if old is not None:
            self.duplicates += 1
            if old >= label:
                return
        rated[segment] = label
        self._num_positives[class_id] = self._num_positives.get(class_id, 0) + label - (old or 0)

    def _add_videos(
        self, videos: Iterable[Video], *, drop_out_of_range: bool, progress: bool
    ) -> None:
        dup_before = self.duplicates
        for video in tqdm(videos, desc="ratings", unit="video", disable=not progress):
            self.num_videos += 1
            labels = np.asarray(video.segment_labels).tolist()
            starts = np.asarray(video.segment_starts).tolist()
            scores = np.asarray(video.segment_scores, dtype=np.float64).tolist()
            last = video.num_segments * SEGMENT_FRAMES  # first start that is not a whole segment
            for c, start, score in zip(labels, starts, scores, strict=True):
                if score != score:
                    raise ValueError(
                        f"video {video.id!r}: segment_scores holds NaN (class {c}, start {start})"
                    )
                if start >= last or start < 0:
                    self.out_of_range += 1
                    if drop_out_of_range:
                        continue
                self.add(int(c), segment_id(video.id, start), score)
        if self.out_of_range:
            log.warning(
                "%d rating(s) start past the video's last whole segment; %s",
                self.out_of_range,
                "skipped" if drop_out_of_range else "kept as ground truth (never retrievable)",
            )
        if self.duplicates > dup_before:
            log.warning(
                "%d (segment, class) pair(s) rated more than once; kept the max rating",
                self.duplicates - dup_before,
            )

    def __getitem__(self, class_id: int) -> Mapping[str, int]:
        return self._by_class[class_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_class)

    def __len__(self) -> int:
        return len(self._by_class)

    def rated(self, class_id: int) -> Mapping[str, int]:
        """{segment id: 0/1} of one class; empty for a class that was never rated."""
        return self._by_class.get(class_id, {})

    def num_positives(self, class_id: int) -> int:
        """N_c: the number of positive ratings of ``class_id``."""
        return self._num_positives.get(class_id, 0)

    def positive_classes(self) -> list[int]:
        """Sorted class ids with at least one positive rating (the classes mAP averages over)."""
        return sorted(c for c, n in self._num_positives.items() if n > 0)

    @property
    def num_ratings(self) -> int:
        """Number of distinct rated (segment, class) pairs."""
        return sum(len(r) for r in self._by_class.values())


def _num_positives(rated: Mapping[str, float]) -> int:
    return sum(1 for v in rated.values() if _is_positive(v))


def _positives_by_class(ratings: RatingsLike) -> dict[int, int]:
    if isinstance(ratings, Ratings):
        return {c: ratings.num_positives(c) for c in ratings.positive_classes()}
    counts = {int(c): _num_positives(rated) for c, rated in ratings.items()}
    return {c: n for c, n in sorted(counts.items()) if n > 0}


# --------------------------------------------------------------------------------------------
# Average precision
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClassScore:
    """How one class's submitted list scored.

    Attributes:
        class_id: the class.
        positives: N_c, positive ratings of the class in the ground truth.
        rated: ratings of the class (positive and negative).
        listed: submitted entries considered (after truncation to ``top``).
        kept: entries left after removing unrated segments and repeated tokens.
        retrieved: positives among the kept entries.
        duplicates: repeated rated tokens dropped (only their first occurrence counts).
        ap: the average precision.
    """

    class_id: int
    positives: int
    rated: int
    listed: int
    kept: int
    retrieved: int
    duplicates: int
    ap: float


def score_class(
    class_id: int,
    ranked_segment_ids: Iterable[str],
    rated: Mapping[str, float],
    top: int = TOP,
    *,
    positives: int | None = None,
) -> ClassScore:
    """Score one class's ranked list; see the module docstring for the exact rule.

    Args:
        class_id: the class (only reported back).
        ranked_segment_ids: segment tokens ``"vid:start"``, best first, length n (any n).
        rated: {segment id: rating} of this class only; values >= 0.5 are positive.
        top: the cap; only the first ``top`` submitted entries are considered.
        positives: N_c when the caller already knows it (else counted from ``rated``).

    Work is one hash lookup per listed token (C-level), then a Python loop over the few rated hits.
    """
    if isinstance(ranked_segment_ids, str):
        raise TypeError("ranked_segment_ids must be a sequence of tokens, not one string")
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    if isinstance(ranked_segment_ids, Sequence) or isinstance(ranked_segment_ids, np.ndarray):
        listed = ranked_segment_ids[:top]
    else:
        listed = list(islice(ranked_segment_ids, top))
    hits = compress(listed, map(rated.__contains__, listed))
    n_pos = _num_positives(rated) if positives is None else positives
    seen: set[str] = set()
    kept = retrieved = duplicates = 0
    total = 0.0
    for token in hits:
        if token in seen:
            duplicates += 1
            continue
        seen.add(token)
        kept += 1
        if _is_positive(rated[token]):
            retrieved += 1
            total += retrieved / kept  # Prec(k) at a relevant rank k = kept
    ap = total / n_pos if n_pos > 0 else 0.0
    return ClassScore(
        class_id=int(class_id),
        positives=n_pos,
        rated=len(rated),
        listed=len(listed),
        kept=kept,
        retrieved=retrieved,
        duplicates=duplicates,
        ap=ap,
    )


def average_precision(
    ranked_segment_ids: Iterable[str], rated: Mapping[str, float], top: int = TOP
) -> float:
    """AP of one class's ranked list against that class's ratings.

    Args:
        ranked_segment_ids: segment tokens ``"vid:start"``, best first, length n.
        rated: {segment id: rating} of this class only (values >= 0.5 positive).
        top: only the first ``top`` submitted entries count (truncation happens before unrated
            segments are removed and before repeated tokens are dropped).

    Returns:
        ``(1/N_c) * sum_k Prec(k) * rel(k)`` over the kept ranks; 0.0 when ``rated`` holds no
        positive (the class would be ignored by :func:`mean_average_precision`).
    """
    return score_class(-1, ranked_segment_ids, rated, top).ap


@dataclass(frozen=True, slots=True)
class SubmissionScore:
    """A whole submission's score.

    Attributes:
        map: mean AP over the ground truth's classes with positives.
        per_class: one :class:`ClassScore` per class with positives, by class id (a class missing
            from the submission has ``listed == 0`` and ``ap == 0``).
        missing: classes with positives that the submission does not list.
        ignored: submitted classes without any positive rating (not scored).
    """

    map: float
    per_class: dict[int, ClassScore]
    missing: list[int] = field(default_factory=list)
    ignored: list[int] = field(default_factory=list)


def score_submission(
    predictions: Predictions, ratings: RatingsLike, top: int = TOP, *, progress: bool = False
) -> SubmissionScore:
    """Score every class of a submission.

    Args:
        predictions: class id -> ranked segment tokens (best first), or an iterable of
            ``(class_id, tokens)`` pairs (e.g. :func:`iter_submission`, scored as it streams).
        ratings: the ground truth (:class:`Ratings` or class -> {segment: rating}).
        top: the per-class cap.
        progress: show a progress bar over classes.

    Raises:
        ValueError: a class appears twice in an iterable of pairs.
    """
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    positives = _positives_by_class(ratings)
    per_class: dict[int, ClassScore] = {}
    ignored: list[int] = []
    seen: set[int] = set()
    for raw_class, tokens in tqdm(
        prediction_items(predictions), desc="scoring", unit="class", disable=not progress
    ):
        c = int(raw_class)
        if c in seen:
            raise ValueError(f"class {c} is listed twice in the predictions")
        seen.add(c)
        n_pos = positives.get(c, 0)
        if n_pos == 0:
            ignored.append(c)
            continue
        per_class[c] = score_class(c, tokens, ratings[c], top, positives=n_pos)
    missing = [c for c in positives if c not in per_class]
    for c in missing:
        per_class[c] = ClassScore(c, positives[c], len(ratings[c]), 0, 0, 0, 0, 0.0)
    ordered = {c: per_class[c] for c in sorted(per_class)}
    m = sum(s.ap for s in ordered.values()) / len(ordered) if ordered else 0.0
    return SubmissionScore(map=m, per_class=ordered, missing=missing, ignored=sorted(ignored))


def per_class_average_precision(
    predictions: Predictions, ratings: RatingsLike, top: int = TOP
) -> dict[int, float]:
    """AP of every ground-truth class with positives (0.0 where the submission lacks the class)."""
    return {c: s.ap for c, s in score_submission(predictions, ratings, top).per_class.items()}


def mean_average_precision(predictions: Predictions, ratings: RatingsLike, top: int = TOP) -> float:
    """The challenge metric: mean AP over the ground truth's classes with positives.

    Args:
        predictions: class id -> ranked segment tokens ``"vid:start"`` (best first), or an
            iterable of ``(class_id, tokens)`` pairs.
        ratings: the ground truth (:class:`Ratings` or class -> {segment: rating}).
        top: only the first ``top`` entries of each list count.

    Returns:
        mAP in [0, 1]; 0.0 when no class has a positive rating.
    """
    return score_submission(predictions, ratings, top).map


# --------------------------------------------------------------------------------------------
# Candidate generation recall
# --------------------------------------------------------------------------------------------


def _video_of(token: str) -> str:
    return token.rpartition(":")[0]


def positives_by_video(rated: Mapping[str, float]) -> dict[str, int]:
    """{video id: number of positive segments} of one class's ratings."""
    out: dict[str, int] = {}
    for token, value in rated.items():
        if _is_positive(value):
            vid = _video_of(token)
            out[vid] = out.get(vid, 0) + 1
    return out


def _descending_ranks(scores: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
    """Rank of each entry (0 = best) by descending score; ties keep input order. [V] -> [V]."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(len(scores), dtype=np.int64)
    return ranks


def recall_at_k(
    video_scores: Mapping[str, float], positives_by_video: Mapping[str, int], k: int
) -> float:
    """Recall of one class's top-``k`` videos.

    Args:
        video_scores: {video id: score for the class}, V videos; the top ``k`` by score are kept,
            ties broken by the mapping's order (stable).
        positives_by_video: {video id: positive segments of the class in it}; videos absent from
            ``video_scores`` are never retrieved but count in the denominator.
        k: number of videos kept (>= 1; more than V keeps them all).

    Returns:
        positives inside the top-k videos / all positives; 0.0 when there are no positives.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    total = sum(positives_by_video.values())
    if total <= 0:
        return 0.0
    ids = list(video_scores)
    scores = np.fromiter(video_scores.values(), dtype=np.float64, count=len(ids))
    if np.isnan(scores).any():
        raise ValueError("video_scores holds NaN")
    top = {ids[i] for i in np.argsort(-scores, kind="stable")[:k].tolist()}
    return sum(n for v, n in positives_by_video.items() if v in top) / total


@dataclass(frozen=True, slots=True)
class CandidateRecall:
    """Candidate-generation recall for several K.

    Attributes:
        ks: the K values (videos kept per class), length NK.
        classes: int64 [NC], the classes with positives, sorted.
        positives: int64 [NC], N_c of each class.
        recall: float64 [NK, NC], recall of class ``classes[j]`` with its top ``ks[i]`` videos.
        mean: {K: recall averaged over classes} (the headline number).
        micro: {K: all retrieved positives / all positives}, pooled over classes.
    """

    ks: tuple[int, ...]
    classes: npt.NDArray[np.int64]
    positives: npt.NDArray[np.int64]
    recall: npt.NDArray[np.float64]
    mean: dict[int, float]
    micro: dict[int, float]

    def per_class(self, k: int) -> dict[int, float]:
        """{class id: recall} at one of :attr:`ks`."""
        i = self.ks.index(k)
        return dict(zip(self.classes.tolist(), self.recall[i].tolist(), strict=True))


def candidate_recall(
    video_ids: Sequence[str],
    scores: npt.NDArray[np.floating],
    ratings: RatingsLike,
    ks: Iterable[int],
) -> CandidateRecall:
    """Recall of the top-K videos per class, for each K.

    For every class c with positive ratings, the videos are ranked by ``scores[:, c]`` (descending;
    ties keep the order of ``video_ids``, i.e. a stable sort) and the first K kept; recall = the
    positive segments of c inside those videos / all positives of c. Positives in videos missing
    from ``video_ids``, and classes beyond the score columns, are never retrieved.

    Args:
        video_ids: V distinct video ids, the rows of ``scores``.
        scores: float [V, C], column c is the video-level score of class c.
        ratings: the ground truth (:class:`Ratings` or class -> {segment: rating}).
        ks: videos kept per class, each >= 1.
    """
    ks_t = tuple(int(k) for k in ks)
    if not ks_t or min(ks_t) < 1:
        raise ValueError(f"ks must be non-empty and each >= 1, got {ks_t}")
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != len(video_ids):
        raise ValueError(f"scores must be [V={len(video_ids)}, C], got shape {tuple(scores.shape)}")
    if np.isnan(scores).any():
        raise ValueError("scores holds NaN")
    row = {v: i for i, v in enumerate(video_ids)}
    if len(row) != len(video_ids):
        raise ValueError("video_ids holds duplicate ids")
    num_cols = scores.shape[1]
    counts = _positives_by_class(ratings)
    classes = np.array(sorted(counts), dtype=np.int64)
    positives = np.array([counts[c] for c in classes.tolist()], dtype=np.int64)
    found = np.zeros((len(ks_t), len(classes)), dtype=np.int64)
    kk = np.array(ks_t, dtype=np.int64)[:, None]
    for j, c in enumerate(classes.tolist()):
        if c >= num_cols:
            continue
        by_video = positives_by_video(ratings[c])
        rows = [(row[v], n) for v, n in by_video.items() if v in row]
        if not rows:
            continue
        idx = np.array([r for r, _ in rows], dtype=np.int64)
        npos = np.array([n for _, n in rows], dtype=np.int64)
        ranks = _descending_ranks(scores[:, c])[idx]
        found[:, j] = ((ranks[None, :] < kk) * npos[None, :]).sum(axis=1)
    recall = found / np.maximum(positives, 1)[None, :]
    mean = {k: float(recall[i].mean()) if len(classes) else 0.0 for i, k in enumerate(ks_t)}
    total = int(positives.sum())
    micro = {k: float(found[i].sum() / total) if total else 0.0 for i, k in enumerate(ks_t)}
    return CandidateRecall(ks_t, classes, positives, recall, mean, micro)


# --------------------------------------------------------------------------------------------
# `ccrl score`
# --------------------------------------------------------------------------------------------

_TABLE_ROWS = 40  # print every class up to this many; else summary stats and worst/best
_EXTREMES = 10


def format_table(scores: Iterable[ClassScore]) -> list[str]:
    """One text line per class: class, N positives, rated, listed, kept, retrieved, AP."""
    lines = [
        f"{'class':>7} {'positives':>9} {'rated':>7} {'listed':>8} {'kept':>6} "
        f"{'retrieved':>9} {'AP':>8}"
    ]
    for s in scores:
        lines.append(
            f"{s.class_id:>7} {s.positives:>9} {s.rated:>7} {s.listed:>8} {s.kept:>6} "
            f"{s.retrieved:>9} {s.ap:>8.4f}"
        )
    return lines


def format_report(result: SubmissionScore) -> list[str]:
    """The ``ccrl score`` report; its last line is ``mAP <value>``."""
    scores = list(result.per_class.values())
    lines = [
        f"classes with positives: {len(scores)}   missing from submission: {len(result.missing)}"
        f"   submitted without positives (ignored): {len(result.ignored)}"
    ]
    dups = sum(s.duplicates for s in scores)
    if dups:
        lines.append(f"repeated tokens dropped (first occurrence kept): {dups}")
    if len(scores) <= _TABLE_ROWS:
        lines += format_table(scores)
    else:
        aps = [s.ap for s in scores]
        q = statistics.quantiles(aps, n=4)
        lines.append(
            f"AP over classes: min {min(aps):.4f}  q1 {q[0]:.4f}  median {q[1]:.4f}  "
            f"q3 {q[2]:.4f}  max {max(aps):.4f}"
        )
        ranked = sorted(scores, key=lambda s: (s.ap, s.class_id))
        lines.append(f"worst {_EXTREMES} classes:")
        lines += format_table(ranked[:_EXTREMES])
        lines.append(f"best {_EXTREMES} classes:")
        lines += format_table(ranked[::-1][:_EXTREMES])
    if result.missing:
        shown = " ".join(str(c) for c in result.missing[:20])
        more = " ..." if len(result.missing) > 20 else ""
        lines.append(f"missing classes (AP 0): {shown}{more}")
    lines.append(f"mAP {result.map:.6f}")
    return lines


def run_score(submission: Path, data: list[Path], *, top: int = TOP) -> float:
    """``ccrl score SUBMISSION.csv --data RATED``: print the per-class report, last line ``mAP``.

    Exits with code 2 and a message on stderr for a malformed submission, missing data, a data set
    without positive ratings, or a bad ``top``.
    """
    import typer

    from service.tfrecord import TFRecordError, read_videos

    def fail(message: str) -> typer.Exit:
        typer.echo(f"error: {message}", err=True)
        return typer.Exit(code=2)

    if top < 1:
        raise fail(f"--top must be >= 1, got {top}")
    if not Path(submission).is_file():
        raise fail(f"submission {submission} does not exist")
    tty = sys.stderr.isatty()
    try:
        ratings = Ratings.from_videos(read_videos(data, progress=tty), progress=False)
    except (OSError, ValueError, TFRecordError) as e:
        raise fail(f"cannot read ratings from {', '.join(map(str, data))}: {e}") from None
    if not ratings.positive_classes():
        raise fail(f"no positive segment ratings in {', '.join(map(str, data))}")
    typer.echo(
        f"ratings: {ratings.num_videos} videos, {ratings.num_ratings} rated (segment, class) "
        f"pairs, {len(ratings.positive_classes())} classes with positives"
    )
    try:
        result = score_submission(iter_submission(submission), ratings, top, progress=tty)
    except SubmissionError as e:
        raise fail(str(e)) from None
    for line in format_report(result):
        typer.echo(line)
    return result.map
