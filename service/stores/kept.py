"""The review store: the segments whose embeddings the service keeps, per class (bounded).

Labelling by reference (``POST /classes/{c}/labels`` without frames) and re-scoring after a label
need a segment's embedding and feature row after its request is gone. The service keeps them for
two capped lists per class, each of the ``cap`` best segments seen by its priority:

- ``top``: the best-scored segments (priority = score), the class's top list;
- ``edge``: the segments closest to the decision boundary (priority = ``-|margin|``, margin 0 being
  the booster's boundary, see :mod:`service.review`), the review queue's candidates.

A segment in either list is one :class:`KeptItem`: its feature row for the class (NF float32),
the embeddings of the segment and its neighbours (at most 3 x D float32: the similarity columns of
a row read the neighbours' ``sim_mean_diff``) and its current score. Memory per class is at most
``2 * cap`` items of ``4 * (NF + 3 D) + ~100`` bytes: with cap 100, NF 28 and D 128 about 330 KB a
class. A segment that falls out of both lists is forgotten (labelling it then needs its frames).

Two implementations, beside the index they serve: in-process (:class:`MemoryKeptStore`) and Redis
(:class:`service.stores.redis_kept.RedisKeptStore`, the index's connection and namespace).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from service.yt8m import segment_id

F32 = npt.NDArray[np.float32]

LISTS = ("top", "edge")
"""The two kept lists of a class: best-scored, and closest to the boundary."""


@dataclass(frozen=True)
class KeptItem:
    """One kept (segment, class) pair.

    Attributes:
        video_id: the segment's video.
        start: its start frame.
        score: its current CCRL score for the class.
        margin: the booster's margin for that score (0 = the decision boundary).
        x: float32 [NF], its pair-feature row for the class (columns ``FEATURE_NAMES``).
        window: float32 [w, D], the embeddings of the segment and its neighbours (w <= 3).
        row: the segment's row in ``window`` (0 for a video's first segment, else 1).
    """

    video_id: str
    start: int
    score: float
    margin: float
    x: F32
    window: F32
    row: int

    @property
    def member(self) -> str:
        """The segment id ``video:start`` (the index's member name)."""
        return segment_id(self.video_id, self.start)

    @property
    def embedding(self) -> F32:
        """float32 [D], the segment's own embedding."""
        return self.window[self.row]

    def priority(self, which: str) -> float:
        """Its priority in list ``which``: the score (``top``) or ``-|margin|`` (``edge``)."""
        return self.score if which == "top" else -abs(self.margin)

    def rescored(self, x: F32, score: float, margin: float) -> KeptItem:
        return replace(self, x=x, score=score, margin=margin)


Floors = tuple[float, float]
"""(top, edge): the priority an item must beat to enter each list (-inf while not full)."""


class KeptStore(ABC):
    """The kept segments of every class: two lists of at most ``cap`` items each."""

    kind: str = "abstract"
    cap: int

    @abstractmethod
    def floors(self, class_id: int) -> Floors:
        """The priorities to beat for the class's lists (a hint: ``put`` decides)."""

    @abstractmethod
    def put(self, class_id: int, items: Sequence[KeptItem], *, existing_only: bool = False) -> None:
        """Offer items to both lists of the class (same segment: replaced); each list keeps its
        ``cap`` best. ``existing_only``: update only segments still kept (re-scoring)."""

    def put_classes(self, offers: Mapping[int, Sequence[KeptItem]]) -> None:
        """:meth:`put` for several classes at once (one round trip where the backend allows)."""
        for class_id, items in offers.items():
            self.put(class_id, items)

    @abstractmethod
    def ranked(self, class_id: int, which: str, limit: int, offset: int = 0) -> list[KeptItem]:
        """Items of list ``which`` best first: ``offset .. offset + limit``."""

    @abstractmethod
    def get(self, class_id: int, members: Sequence[str]) -> list[KeptItem | None]:
        """The kept items of these segment ids (None where not kept)."""

    @abstractmethod
    def items(self, class_id: int) -> list[KeptItem]:
        """Every kept item of the class (both lists, each once)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""


class _KeptClass:
    """One class in process: items by member, and each list's member -> priority."""

    __slots__ = ("items", "lists")

    def __init__(self) -> None:
        self.items: dict[str, KeptItem] = {}
        self.lists: dict[str, dict[str, float]] = {w: {} for w in LISTS}

    def put(self, item: KeptItem, cap: int) -> None:
        m = item.member
        self.items[m] = item
        for w, lst in self.lists.items():
            lst[m] = item.priority(w)
        for w in LISTS:
            self._trim(w, cap)

    def _trim(self, which: str, cap: int) -> None:
        lst = self.lists[which]
        if len(lst) <= cap:
            return
        # ties as Redis trims them: the lowest priority first, then the smallest member
        for m in sorted(lst, key=lambda k: (lst[k], k))[: len(lst) - cap]:
            del lst[m]
            if not any(m in other for other in self.lists.values()):
                del self.items[m]

    def floor(self, which: str, cap: int) -> float:
        lst = self.lists[which]
        return min(lst.values()) if len(lst) >= cap else -np.inf


class MemoryKeptStore(KeptStore):
    """The kept segments in this process (beside the in-process index)."""

    kind = "memory"

    def __init__(self, cap: int = 100) -> None:
        if cap < 0:
            raise ValueError(f"kept cap must be >= 0, got {cap}")
        self.cap = cap
        self._classes: dict[int, _KeptClass] = {}
        self._lock = threading.Lock()

    def floors(self, class_id: int) -> Floors:
        with self._lock:
            kc = self._classes.get(class_id)
            if kc is None:
                return (-np.inf, -np.inf)
            return (kc.floor("top", self.cap), kc.floor("edge", self.cap))

    def put(self, class_id: int, items: Sequence[KeptItem], *, existing_only: bool = False) -> None:
        if self.cap == 0 or not items:
            return
        with self._lock:
            kc = self._classes.setdefault(class_id, _KeptClass())
            for item in items:
                if existing_only and item.member not in kc.items:
                    continue
                kc.put(item, self.cap)

    def ranked(self, class_id: int, which: str, limit: int, offset: int = 0) -> list[KeptItem]:
        with self._lock:
            kc = self._classes.get(class_id)
            if kc is None:
                return []
            lst = kc.lists[which]
            order = sorted(lst, key=lambda k: (lst[k], k), reverse=True)[offset : offset + limit]
            return [kc.items[m] for m in order]

    def get(self, class_id: int, members: Sequence[str]) -> list[KeptItem | None]:
        with self._lock:
            kc = self._classes.get(class_id)
            return [None if kc is None else kc.items.get(m) for m in members]

    def items(self, class_id: int) -> list[KeptItem]:
        with self._lock:
            kc = self._classes.get(class_id)
            return [] if kc is None else list(kc.items.values())


def kept_store_for(index: object, cap: int) -> KeptStore:
    """The review store beside ``index``: Redis on its connection and namespace for a
    :class:`~service.stores.redis.RedisIndexStore`, else in-process."""
    from service.stores.redis import RedisIndexStore

    if isinstance(index, RedisIndexStore):
        from service.stores.redis_kept import RedisKeptStore

        return RedisKeptStore(index.backend, cap)
    return MemoryKeptStore(cap)
