"""The driver's side of a corpus job: partial results folded into bounded merged state.

:class:`CgMerger` keeps the top K videos of every class (float32 + int64 per kept video and class:
``R * K`` entries, the CG candidate set itself); :class:`RankMerger` keeps each class's selected
segments (at most about ``2 * top`` per class) and the video ids by ordinal (``N`` strings). Both
can be saved and restored (``state_arrays`` / ``load``) for ``--resume``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from batch.plan import Plan
from batch.topn import ORDERS, Entries, SegmentTops, VideoTop
from batch.worker import pack, unpack

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class CgMerger:
    """Merges :func:`batch.worker.cg_task` parts; consolidates once K buffered rows wait."""

    def __init__(self, k: int, num_classes: int) -> None:
        self.k = k
        self.state = VideoTop(
            k, np.zeros((0, num_classes), np.float32), np.zeros((0, num_classes), np.int64)
        )
        self.buffer: list[VideoTop] = []
        self.buffered = 0
        self.done: list[int] = []
        self.videos = 0

    def add(self, part: dict[str, Any]) -> None:
        self.buffer.append(VideoTop(self.k, part["vp"], part["ordinal"]))
        self.buffered += int(part["vp"].shape[0])
        self.done.append(int(part["chunk"]))
        self.videos += int(part["n"])
        if self.buffered >= max(self.k, 1024):
            self.consolidate()

    def consolidate(self) -> VideoTop:
        if self.buffer:
            vp = np.concatenate([self.state.vp, *(b.vp for b in self.buffer)])
            ords = np.concatenate([self.state.ordinal, *(b.ordinal for b in self.buffer)])
            self.state = VideoTop.of(vp, ords, self.k)
            self.buffer, self.buffered = [], 0
        return self.state

    def state_arrays(self) -> dict[str, Any]:
        s = self.consolidate()
        return {"vp": s.vp, "ordinal": s.ordinal, "videos": np.int64(self.videos)}

    def load(self, arrays: dict[str, np.ndarray], done: set[int]) -> None:
        self.state = VideoTop(self.k, arrays["vp"], arrays["ordinal"])
        self.videos = int(arrays["videos"])
        self.done = sorted(done)


class IdTable:
    """Video ids by corpus ordinal: unicode [N], widened as longer ids arrive."""

    def __init__(self, n: int) -> None:
        self.ids: npt.NDArray[np.str_] = np.zeros(n, dtype="<U1")

    def put(self, ordinal: int, ids: npt.NDArray[np.str_]) -> None:
        if ids.dtype.itemsize > self.ids.dtype.itemsize:
            self.ids = self.ids.astype(ids.dtype)
        self.ids[ordinal : ordinal + len(ids)] = ids

    def __call__(self, ordinals: I64) -> npt.NDArray[np.str_]:
        return self.ids[ordinals]


class RankMerger:
    """Merges :func:`batch.worker.rank_task` parts into per-class top lists (both orders)."""

    def __init__(self, plan: Plan, num_classes: int, top: int) -> None:
        self.plan = plan
        self.tops = SegmentTops(num_classes, top, ORDERS)
        self.ids = IdTable(plan.num_videos)
        self.done: list[int] = []

    def add(self, part: dict[str, Any]) -> None:
        chunk = int(part["chunk"])
        self.ids.put(self.plan.chunks[chunk].ordinal, part["ids"])
        for r, e in enumerate(unpack(part)):
            self.tops.add(r, e, self.ids)
        self.done.append(chunk)

    def finals(self) -> list[Entries]:
        return [self.tops.final(r, self.ids) for r in range(self.tops.num_classes)]

    def state_arrays(self) -> dict[str, Any]:
        return {**pack(self.finals()), "ids": self.ids.ids}

    def load(self, arrays: dict[str, np.ndarray], done: set[int]) -> None:
        self.ids.ids = arrays["ids"]
        for r, e in enumerate(unpack(arrays)):
            self.tops.add(r, e, self.ids)
        self.done = sorted(done)
