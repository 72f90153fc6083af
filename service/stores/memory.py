"""In-process stores: the default, no Redis needed (one process; not shared between workers)."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Mapping, Sequence

from service.bank import ClassBank, NotInBank
from service.stores.base import (
    F32,
    I64,
    BankStore,
    IndexEntry,
    IndexStore,
    LabelBatch,
    RemoveResult,
    StoreHealth,
    StoreListener,
    VideoExists,
    WriteResult,
)
from service.yt8m import parse_segment_id, segment_id


class MemoryBankStore(BankStore):
    """The bank held in this process; a write swaps in a new :class:`ClassBank` atomically."""

    kind = "memory"

    def __init__(self, bank: ClassBank, listener: StoreListener | None = None) -> None:
        self._bank = bank
        self._version = 0
        self._lock = threading.Lock()
        self._listener = listener or StoreListener()
        self._listener.bank_refreshed(bank)

    def snapshot(self) -> ClassBank:
        return self._bank

    def add(self, batch: LabelBatch) -> WriteResult:
        c = batch.class_id
        with self._lock:
            bank, replaced = self._bank.put(
                c, batch.embeddings, batch.labels, batch.video_id, batch.starts
            )
            self._bank = bank
            self._version += 1
            version = self._version
        self._listener.bank_refreshed(bank)
        return WriteResult(version, int(bank.pos_count[c]), int(bank.neg_count[c]), replaced)

    def remove(self, class_id: int, video_id: str, starts: Sequence[int]) -> RemoveResult:
        c = class_id
        with self._lock:
            found = self._bank.view(c).find(video_id, list(starts))
            missing = [int(s) for s, r in zip(starts, found.tolist(), strict=True) if r < 0]
            if missing:
                raise NotInBank(c, video_id, missing)
            bank, labels = self._bank.remove(c, video_id, list(starts))
            self._bank = bank
            self._version += 1
            version = self._version
        self._listener.bank_refreshed(bank)
        return RemoveResult(
            version, [int(x) for x in labels], int(bank.pos_count[c]), int(bank.neg_count[c])
        )

    def version(self) -> int:
        return self._version

    def health(self) -> StoreHealth:
        return StoreHealth(self.kind, True, "in-process")


class _ClassList:
    """One class's capped ranked list: member -> score, a min-heap for trimming, a sorted cache."""

    __slots__ = ("heap", "scores", "sorted")

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}
        self.heap: list[tuple[float, str]] = []  # may hold stale (score, member) pairs
        self.sorted: list[tuple[str, float]] | None = None

    def add(self, member: str, score: float) -> None:
        self.scores[member] = score
        heapq.heappush(self.heap, (score, member))
        self.sorted = None

    def remove(self, member: str) -> None:
        if self.scores.pop(member, None) is not None:
            self.sorted = None

    def trim(self, cap: int) -> None:
        """Drop the lowest entries beyond ``cap`` (ties: the smaller member first, as Redis)."""
        while len(self.scores) > cap:
            score, member = heapq.heappop(self.heap)
            if self.scores.get(member) == score:
                del self.scores[member]
                self.sorted = None
        if len(self.heap) > 2 * len(self.scores) + 64:  # drop stale heap pairs
            self.heap = [(s, m) for m, s in self.scores.items()]
            heapq.heapify(self.heap)

    def ranked(self) -> list[tuple[str, float]]:
        """Best first: score descending, then member descending (Redis ZREVRANGE order)."""
        if self.sorted is None:
            self.sorted = sorted(self.scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        return self.sorted


class MemoryIndexStore(IndexStore):
    """The corpus index in this process: a capped ranked list per class."""

    kind = "memory"

    def __init__(self, cap: int = 100_000) -> None:
        if cap < 1:
            raise ValueError(f"index cap must be >= 1, got {cap}")
        self.cap = cap
        self._classes: dict[int, _ClassList] = {}
        self._videos: dict[str, dict[int, list[int]]] = {}
        self._lock = threading.Lock()

    def put_video(
        self, video_id: str, entries: Mapping[int, tuple[I64, F32]], *, overwrite: bool = True
    ) -> int:
        written = 0
        with self._lock:
            if not overwrite and video_id in self._videos:
                raise VideoExists(video_id)
            for c, old_starts in self._videos.pop(video_id, {}).items():
                old_list = self._classes.get(c)
                if old_list is not None:
                    for s in old_starts:
                        old_list.remove(segment_id(video_id, s))
            kept: dict[int, list[int]] = {}
            for c, (starts, scores) in entries.items():
                lst = self._classes.setdefault(int(c), _ClassList())
                st = [int(s) for s in starts.tolist()]
                for s, v in zip(st, scores.tolist(), strict=True):
                    lst.add(segment_id(video_id, s), float(v))
                lst.trim(self.cap)
                kept[int(c)] = st
                written += len(st)
            self._videos[video_id] = kept
        return written

    def has_video(self, video_id: str) -> bool:
        with self._lock:
            return video_id in self._videos

    def top(self, class_id: int, limit: int, offset: int = 0) -> tuple[int, list[IndexEntry]]:
        with self._lock:
            lst = self._classes.get(class_id)
            if lst is None:
                return 0, []
            ranked = lst.ranked()
            page = ranked[offset : offset + limit]
            total = len(ranked)
        out = []
        for member, score in page:
            vid, start = parse_segment_id(member)
            out.append(IndexEntry(vid, start, score))
        return total, out

    def rescore(self, class_id: int, entries: Sequence[IndexEntry]) -> int:
        done = 0
        with self._lock:
            lst = self._classes.get(class_id)
            if lst is None:
                return 0
            for e in entries:
                member = segment_id(e.video_id, e.start)
                if member in lst.scores:
                    lst.add(member, float(e.score))
                    done += 1
        return done

    def health(self) -> StoreHealth:
        return StoreHealth(self.kind, True, "in-process")
