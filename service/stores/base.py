"""The two stores behind the service, as small interfaces.

- :class:`BankStore`: the labelled-embedding bank (:class:`service.bank.ClassBank`). Scoring
  reads an immutable snapshot (never fails, never waits: a replica always has a local copy);
  label writes put or remove entries at O(n D) for n entries.
- :class:`IndexStore`: the per-class ranked index of the corpus: one sorted list of
  ``(segment id, score)`` per class, capped, where re-scoring a video replaces its entries.

Two implementations of each: in-process (:mod:`service.stores.memory`, the default) and Redis
(:mod:`service.stores.redis_bank` for the bank, :mod:`service.stores.redis` for the index). A
store that cannot reach its backend raises
:class:`StoreUnavailable` from writes and index reads; the API answers 503.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from service.bank import ClassBank

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class StoreUnavailable(RuntimeError):
    """The shared store cannot be reached (or did not confirm a write). ``store`` is bank|index."""

    def __init__(self, store: str, op: str, reason: str) -> None:
        super().__init__(f"the {store} store is unavailable ({op}): {reason}")
        self.store = store
        self.op = op
        self.reason = reason


class VideoExists(LookupError):
    """The video is already indexed and the write did not ask to overwrite its entries."""

    def __init__(self, video_id: str) -> None:
        super().__init__(
            f'video_id: {video_id!r} is already indexed; send "overwrite": true to replace its '
            "entries"
        )
        self.video_id = video_id


class StoreListener:
    """Hooks the stores call so that metrics stay out of them (all no-ops here)."""

    def store_error(self, store: str, op: str) -> None:
        """A backend operation failed."""

    def degraded(self, on: bool) -> None:
        """The shared store became unreachable (True) or reachable again (False)."""

    def bank_refreshed(self, bank: ClassBank) -> None:
        """The local bank copy was (re)loaded."""

    def index_state(self, partial: bool) -> None:
        """The corpus index was checked: ``partial`` after the shared store lost its data."""

    def redis_reset(self) -> None:
        """The shared store lost its data (see :mod:`service.stores.epoch`)."""


@dataclass(frozen=True)
class LabelBatch:
    """Labelled segments of one video for one class.

    Attributes:
        class_id: the class.
        video_id: the video the segments come from.
        starts: int64 [n] segment start frames.
        labels: int8 [n] 1 positive, 0 negative.
        embeddings: float32 [n, D] the segments' embeddings (the candidate model's encoding).
    """

    class_id: int
    video_id: str
    starts: I64
    labels: npt.NDArray[np.int8]
    embeddings: F32

    def __post_init__(self) -> None:
        n = int(self.starts.shape[0])
        if self.labels.shape != (n,) or self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
            raise ValueError(
                f"label batch: starts {self.starts.shape}, labels {self.labels.shape} and "
                f"embeddings {self.embeddings.shape} disagree"
            )


@dataclass(frozen=True)
class WriteResult:
    """What a label write left in the bank: its new version, the class's counts, and how many of
    the written segments were already there (relabelled)."""

    version: int
    positive: int
    negative: int
    replaced: int = 0


@dataclass(frozen=True)
class RemoveResult:
    """What a removal took out: the bank's new version, the labels (1/0) of the removed segments
    in the order asked, and the class's counts after it."""

    version: int
    labels: list[int]
    positive: int
    negative: int


@dataclass(frozen=True)
class IndexState:
    """What a replica knows of the corpus index: ``complete`` (nothing was lost since it first
    saw the store), ``partial`` (the shared store lost its data since: rebuild the index) or
    ``unknown`` (the store cannot be reached). See :mod:`service.stores.epoch`."""

    state: Literal["complete", "partial", "unknown"]
    detail: str = ""


@dataclass(frozen=True)
class StoreHealth:
    """The state of a store for ``/readyz``."""

    kind: str
    reachable: bool
    detail: str = ""


class BankStore(ABC):
    """The labelled-embedding bank."""

    kind: str = "abstract"

    @abstractmethod
    def snapshot(self) -> ClassBank:
        """The bank to score with; never raises (a stale local copy while the backend is down)."""

    @abstractmethod
    def add(self, batch: LabelBatch) -> WriteResult:
        """Put labelled segments (a segment already there is relabelled); returns only once they
        are stored (else StoreUnavailable). Costs O(n D) whatever the bank's size."""

    @abstractmethod
    def remove(self, class_id: int, video_id: str, starts: Sequence[int]) -> RemoveResult:
        """Remove labelled segments of one video from one class; raises
        :class:`~service.bank.NotInBank` (and removes nothing) when any of them is not there."""

    @abstractmethod
    def version(self) -> int:
        """The version of the local copy (the number of label writes applied)."""

    @abstractmethod
    def health(self) -> StoreHealth:
        """Whether the backend answers now."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""


@dataclass(frozen=True)
class IndexEntry:
    """One segment of a class's ranked corpus list."""

    video_id: str
    start: int
    score: float


class IndexStore(ABC):
    """The per-class ranked index of scored segments across the corpus."""

    kind: str = "abstract"

    @abstractmethod
    def put_video(
        self, video_id: str, entries: Mapping[int, tuple[I64, F32]], *, overwrite: bool = True
    ) -> int:
        """Replace every entry of ``video_id`` with ``entries`` (class -> (starts [n], scores [n])),
        atomically: all of them or none.

        Returns the number of segments written; raises StoreUnavailable when not stored, and
        VideoExists (nothing written) when the video is indexed already and ``overwrite`` is False.
        """

    @abstractmethod
    def has_video(self, video_id: str) -> bool:
        """Whether ``video_id`` is in the index (raises StoreUnavailable when it cannot tell)."""

    @abstractmethod
    def top(self, class_id: int, limit: int, offset: int = 0) -> tuple[int, list[IndexEntry]]:
        """(total entries of the class, entries ``offset .. offset + limit`` best first)."""

    def rescore(self, class_id: int, entries: Sequence[IndexEntry]) -> int:
        """New scores for segments already in the class's list (others are left out); returns
        how many were updated. Used after a label write (:mod:`service.review`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot re-score")

    def state(self) -> IndexState:
        """Whether the index may have lost entries (an in-process index never does)."""
        return IndexState("complete")

    @abstractmethod
    def health(self) -> StoreHealth:
        """Whether the backend answers now."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""
