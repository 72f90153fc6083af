"""Exact, mergeable top-N selections with bounded memory.

Two rankings of a class's segments are kept (their union, so one structure serves both outputs):

- ``csv``: ``ccrl submit``'s order: score descending, then earlier video (ordinal), then earlier
  segment (the stable argsort over segments in reading order);
- ``redis``: the order of a Redis sorted set read best first (``ZRANGE ... REV``): score
  descending, then member ``"vid:start"`` descending bytewise. The service's capped index keeps the
  top ``cap`` members in that order, so the entries written here are exactly the ones it keeps.

Top-N under a total order is mergeable: the top N of a union is the top N of the union of the parts'
top N. Parts are selected on the workers, merged on the driver; nothing holds the videos x classes
score matrix. CG (candidate generation) needs the K-th best video of each class by video score
(ties: earlier video): :class:`VideoTop` keeps the top K of every class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

ORDERS = ("csv", "redis")


def top_set(score: F32, n: int, tie_order: Callable[[I64], I64]) -> I64:
    """Indices of the best ``n`` rows by ``score`` descending (unsorted), ties at the boundary
    broken by ``tie_order(tied indices) -> their order, best first``.

    Args:
        score: float32 [M].
        n: how many to keep.
    """
    m = int(score.shape[0])
    if m <= n:
        return np.arange(m, dtype=np.int64)
    if n <= 0:
        return np.zeros(0, np.int64)
    kth = np.partition(score, m - n)[m - n]  # the n-th largest score
    above = np.flatnonzero(score > kth)
    tied = np.flatnonzero(score == kth)
    need = n - above.shape[0]
    return np.concatenate([above, tied[tie_order(tied)[:need]]]).astype(np.int64)


@dataclass
class Entries:
    """Scored segments of one class: score f32 [M], ordinal i64 [M], start i64 [M]."""

    score: F32
    ordinal: I64
    start: I64

    @staticmethod
    def empty() -> Entries:
        return Entries(np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def take(self, idx: I64) -> Entries:
        return Entries(self.score[idx], self.ordinal[idx], self.start[idx])

    @staticmethod
    def concat(parts: Sequence[Entries]) -> Entries:
        if len(parts) == 1:
            return parts[0]
        return Entries(
            np.concatenate([p.score for p in parts]).astype(np.float32),
            np.concatenate([p.ordinal for p in parts]).astype(np.int64),
            np.concatenate([p.start for p in parts]).astype(np.int64),
        )

    def csv_order(self, idx: I64 | None = None) -> I64:
        """Order of ``idx`` (default all rows) best first under the ``csv`` ranking."""
        idx = np.arange(len(self), dtype=np.int64) if idx is None else idx
        keys = (self.start[idx], self.ordinal[idx], -self.score[idx].astype(np.float64))
        return np.lexsort(keys).astype(np.int64)


def tokens_of(ids: npt.NDArray[np.str_], starts: I64) -> npt.NDArray[np.str_]:
    """Segment ids ``"vid:start"`` of videos ``ids`` [M] and starts [M]."""
    return np.char.add(np.char.add(ids.astype(np.str_), ":"), starts.astype(np.str_))


def select(
    e: Entries,
    n: int,
    orders: Sequence[str],
    video_ids: Callable[[I64], npt.NDArray[np.str_]],
) -> Entries:
    """The union of the top ``n`` of ``e`` under each of ``orders`` (``csv``, ``redis``).

    ``video_ids(ordinals) -> ids`` is only called for rows tied at the boundary score.
    """
    if len(e) <= n:
        return e
    picks: list[I64] = []
    for order in orders:
        if order == "csv":
            picks.append(top_set(e.score, n, lambda t: e.csv_order(t)))
        elif order == "redis":

            def by_member(t: I64) -> I64:
                tok = tokens_of(video_ids(e.ordinal[t]), e.start[t])
                return np.argsort(tok, kind="stable")[::-1].astype(np.int64)

            picks.append(top_set(e.score, n, by_member))
        else:
            raise ValueError(f"unknown order {order!r} (expected one of {ORDERS})")
    idx = picks[0] if len(picks) == 1 else np.union1d(picks[0], picks[1])
    return e.take(np.sort(idx))


@dataclass
class SegmentTops:
    """Per-class partial top lists (class column r of the ranked classes), merged incrementally.

    A class's pending parts are consolidated (``select``) whenever they pass ``2 * n`` rows, so a
    class never holds more than about ``2 * n + one part`` rows.
    """

    num_classes: int
    n: int
    orders: tuple[str, ...]
    parts: list[list[Entries]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.parts:
            self.parts = [[] for _ in range(self.num_classes)]
            self.sizes = [0] * self.num_classes

    def add(self, r: int, e: Entries, video_ids: Callable[[I64], npt.NDArray[np.str_]]) -> None:
        if len(e) == 0:
            return
        self.parts[r].append(e)
        self.sizes[r] += len(e)
        if self.sizes[r] > 2 * self.n:
            self.consolidate(r, video_ids)

    def consolidate(self, r: int, video_ids: Callable[[I64], npt.NDArray[np.str_]]) -> Entries:
        merged = select(
            Entries.concat(self.parts[r] or [Entries.empty()]), self.n, self.orders, video_ids
        )
        self.parts[r] = [merged] if len(merged) else []
        self.sizes[r] = len(merged)
        return merged

    def final(self, r: int, video_ids: Callable[[I64], npt.NDArray[np.str_]]) -> Entries:
        """Class column ``r``'s selected rows (union of the orders' top ``n``)."""
        return self.consolidate(r, video_ids)

    def num_rows(self) -> int:
        return sum(self.sizes)


@dataclass
class VideoTop:
    """The top ``k`` videos of every ranked class by video score (ties: earlier video).

    Attributes:
        k: videos kept per class (CG's K).
        vp: float32 [m, R] the kept video scores (m <= k rows, column r = class column r).
        ordinal: int64 [m, R] their ordinals.
    """

    k: int
    vp: F32
    ordinal: I64

    @staticmethod
    def of(vp: F32, ordinal: I64, k: int) -> VideoTop:
        """The top ``k`` of each column of vp [n, R] with row ordinals ordinal [n] or [n, R]."""
        n, r = vp.shape
        ords = np.broadcast_to(ordinal.reshape(n, -1), (n, r))
        m = min(n, k)
        out_vp = np.empty((m, r), np.float32)
        out_ord = np.empty((m, r), np.int64)
        for j in range(r):
            col_ord = ords[:, j]
            idx = top_set(vp[:, j], m, lambda t, o=col_ord: np.argsort(o[t], kind="stable"))
            out_vp[:, j] = vp[idx, j]
            out_ord[:, j] = col_ord[idx]
        return VideoTop(k, out_vp, out_ord)

    def merge(self, other: VideoTop) -> VideoTop:
        return VideoTop.of(
            np.concatenate([self.vp, other.vp]),
            np.concatenate([self.ordinal, other.ordinal]),
            self.k,
        )

    def thresholds(self) -> tuple[F32, I64]:
        """Per class, the K-th best (video score, ordinal): a video is a CG candidate of class
        column r iff ``vp > t_vp[r]`` or ``vp == t_vp[r] and ordinal <= t_ord[r]``."""
        t_vp = self.vp.min(axis=0)
        at_min = self.vp == t_vp[None, :]
        t_ord = np.where(at_min, self.ordinal, -1).max(axis=0)
        return t_vp.astype(np.float32), t_ord.astype(np.int64)


def in_cg(vp: F32, ordinal: int, t_vp: F32, t_ord: I64) -> npt.NDArray[np.bool_]:
    """bool [R]: the class columns whose CG keeps this video (video scores vp [R])."""
    return (vp > t_vp) | ((vp == t_vp) & (ordinal <= t_ord))
