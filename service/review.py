"""Which segments to label next, labels by reference, and re-scoring after a label (no web code).

**The decision boundary.** A class's boundary is the booster's margin 0: the score at which the
model is indifferent. For the logistic objectives (``binary:logistic``, ``reg:logistic``) the score
is ``sigmoid(margin)`` and the boundary is the score 0.5; for the others (``binary:logitraw``, the
``rank:*`` objectives) the score is the margin itself and the boundary is the score 0, the zero of
the model's scale (a ranking objective fixes only the order: there the ``uncertain`` queue lists
the segments nearest that zero, whatever the class's offset). :func:`margin_function` maps scores
to margins for the bundle's objective.

**The review queue** of a class (``GET /classes/{c}/review``), never a segment labelled for it:

- ``uncertain``: the kept segments (:mod:`service.stores.kept`) with the smallest ``|margin|``;
- ``top_unlabelled``: the best-scored indexed segments without a label for the class.

**Keeping.** Each indexed localization offers the review store, per scored class, the segments
that beat a list's floor (the ``cap`` best so far by score, and by ``-|margin|``). Only kept
segments can be labelled without frames (:meth:`Reviewer.reference_batch`, else :class:`NotKept`).

**Re-scoring.** After a label write to class c, every kept segment of c gets its bank-dependent
feature columns recomputed with the new bank (:func:`service.features.similarity_columns` on the
kept window of embeddings), a new score from the booster, and that score in the index: the class's
top list and queue move at once, without re-sending any video. Indexed segments that are not kept
keep their score until their video is localized again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from service import explain, labels
from service.bank import ClassBank
from service.bundle import predict_pairs
from service.features import similarity_columns
from service.localize import Localized
from service.scorer import Scorer
from service.stores.base import BankStore, IndexEntry, IndexStore, LabelBatch
from service.stores.kept import KeptItem, KeptStore
from service.yt8m import SEGMENT_FRAMES, segment_id

log = logging.getLogger("ccrl.review")

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

STRATEGIES = ("uncertain", "top_unlabelled")
LOGISTIC_OBJECTIVES = frozenset({"binary:logistic", "reg:logistic"})
_PAGE = 200


class NotKept(LookupError):
    """Segments named by reference whose embeddings the service does not keep (a 409)."""

    def __init__(self, class_id: int, video_id: str, starts: Sequence[int]) -> None:
        listed = ", ".join(str(s) for s in starts[:10])
        super().__init__(
            f"the embedding of video {video_id!r} at start {listed} is not kept for class "
            f"{class_id} (only the class's top and review segments are); send the video's frames "
            "(rgb, audio) with the labels instead"
        )
        self.starts = list(starts)


def objective_name(booster: xgb.Booster) -> str:
    """The booster's objective (``binary:logistic``, ``rank:pairwise``, ...)."""
    return str(json.loads(booster.save_config())["learner"]["objective"]["name"])


def margin_function(objective: str) -> Callable[[F32], F32]:
    """Scores -> margins for ``objective``: the logit for the logistic objectives, else the
    identity (the score is the margin)."""
    if objective in LOGISTIC_OBJECTIVES:

        def logit(p: F32) -> F32:
            q = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
            return np.log(q / (1 - q)).astype(np.float32)

        return logit
    return lambda s: np.asarray(s, np.float32)


def queue_priority(strategy: str, scores: F32, margins: F32) -> F32:
    """The queue's order (higher = sooner) of candidates with these scores and margins
    (float32 [n] each): the score for ``top_unlabelled``, ``-|margin|`` for ``uncertain``. The
    review store's lists keep the same priorities (``top``, ``edge``)."""
    if strategy == "top_unlabelled":
        return np.asarray(scores, np.float32)
    if strategy == "uncertain":
        return -np.abs(np.asarray(margins, np.float32))
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")


def pick(priority: F32, floor: float, cap: int) -> I64:
    """Indices of the ``cap`` highest priorities above ``floor``, highest first."""
    idx = np.flatnonzero(priority > floor)
    return idx[np.argsort(-priority[idx], kind="stable")[:cap]].astype(np.int64)


def labelled_keys(bank: ClassBank, class_id: int) -> set[str]:
    """Segment ids (``video:start``) labelled for ``class_id`` in the bank."""
    idx = explain.class_entries(bank, class_id)
    return {
        segment_id(v, s)
        for v, s in zip(bank.emb_video[idx].tolist(), bank.emb_start[idx].tolist(), strict=True)
    }


@dataclass(frozen=True)
class ReviewItem:
    """One segment of a review queue: its score and margin, whether its embedding is kept (it
    can be labelled by reference) and, when asked, its evidence."""

    video_id: str
    start: int
    score: float
    margin: float
    kept: bool
    evidence: explain.Evidence | None = None


class Reviewer:
    """The review side of one process: a scorer (booster, bank columns), the bank, the index
    and the review store."""

    def __init__(self, scorer: Scorer, bank: BankStore, index: IndexStore, kept: KeptStore) -> None:
        self.scorer = scorer
        self.bank = bank
        self.index = index
        self.kept = kept
        self.to_margin = margin_function(objective_name(scorer.booster))

    # ------------------------------------------------------------------ keeping
    def keep(self, done: Localized) -> int:
        """Offer the review store the segments of an indexed localization that can enter a
        class's lists; returns how many items were offered."""
        loc = done.localization
        if self.kept.cap == 0 or done.video_id is None or loc.pairs is None:
            return 0
        emb = loc.segment_embeddings
        num_seg = loc.num_segments
        offers: dict[int, list[KeptItem]] = {}
        for k, c in enumerate(loc.class_ids.tolist()):
            scores = loc.scores[k]
            margins = self.to_margin(scores)
            top_floor, edge_floor = self.kept.floors(c)
            chosen = np.union1d(
                pick(queue_priority("top_unlabelled", scores, margins), top_floor, self.kept.cap),
                pick(queue_priority("uncertain", scores, margins), edge_floor, self.kept.cap),
            )
            offers[c] = [
                _item(done.video_id, int(s), scores, margins, loc.pairs.x[k * num_seg + s], emb)
                for s in chosen.tolist()
            ]
        self.kept.put_classes(offers)  # one round trip to a shared store
        return sum(len(v) for v in offers.values())

    # ------------------------------------------------------------------ re-scoring
    def rescore(self, class_id: int, bank: ClassBank | None = None) -> int:
        """Re-score the kept segments of ``class_id`` with ``bank`` (default: the current one),
        in the review store and the index; returns how many."""
        items = self.kept.items(class_id)
        if not items:
            return 0
        bank = self.bank.snapshot() if bank is None else bank
        x = np.stack([self._fresh_row(it, class_id, bank) for it in items])
        scores = predict_pairs(self.scorer.booster, x)
        margins = self.to_margin(scores)
        new = [it.rescored(x[i], float(scores[i]), float(margins[i])) for i, it in enumerate(items)]
        self.kept.put(class_id, new, existing_only=True)
        self.index.rescore(class_id, [IndexEntry(it.video_id, it.start, it.score) for it in new])
        return len(new)

    def _fresh_row(self, item: KeptItem, class_id: int, bank: ClassBank) -> F32:
        """The item's feature row with its bank columns recomputed (float32 [NF])."""
        w = item.window.shape[0]
        x = np.repeat(item.x[None, None, :], w, axis=1)  # [1, w, NF]
        similarity_columns(
            x, item.window, [class_id], bank, item.video_id, max_sim=self.scorer.max_sim
        )
        return x[0, item.row]

    # ------------------------------------------------------------------ the queue
    def queue(
        self, class_id: int, strategy: str, limit: int, *, with_evidence: bool = False
    ) -> list[ReviewItem]:
        """The next ``limit`` segments to label for ``class_id`` by ``strategy``."""
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        bank = self.bank.snapshot()
        done = labelled_keys(bank, class_id)
        if strategy == "uncertain":
            found = self._uncertain(class_id, limit, done)
        else:
            found = self._top_unlabelled(class_id, limit, done)
        if with_evidence:
            found = self._with_evidence(class_id, found, bank)
        return [
            ReviewItem(it.video_id, it.start, it.score, it.margin, kept, ev)
            for it, kept, ev in found
        ]

    def _uncertain(
        self, class_id: int, limit: int, done: set[str]
    ) -> list[tuple[KeptItem, bool, None]]:
        out: list[tuple[KeptItem, bool, None]] = []
        offset = 0
        while len(out) < limit and offset < max(self.kept.cap, 1):
            page = self.kept.ranked(class_id, "edge", _PAGE, offset)
            out += [(it, True, None) for it in page if it.member not in done]
            if len(page) < _PAGE:
                break
            offset += _PAGE
        return out[:limit]

    def _top_unlabelled(
        self, class_id: int, limit: int, done: set[str]
    ) -> list[tuple[KeptItem, bool, None]]:
        out: list[tuple[KeptItem, bool, None]] = []
        offset = 0
        while len(out) < limit:
            total, page = self.index.top(class_id, _PAGE, offset)
            page = [e for e in page if segment_id(e.video_id, e.start) not in done]
            kept = self.kept.get(class_id, [segment_id(e.video_id, e.start) for e in page])
            margins = self.to_margin(np.asarray([e.score for e in page], np.float32)).tolist()
            for e, it, m in zip(page, kept, margins, strict=True):
                out.append((it or _bare(e, m), it is not None, None))
            offset += _PAGE
            if offset >= total:
                break
        return out[:limit]

    def _with_evidence(
        self, class_id: int, found: list[tuple[KeptItem, bool, None]], bank: ClassBank
    ) -> list[tuple[KeptItem, bool, explain.Evidence | None]]:
        """Evidence for the kept items (those have a feature row): one TreeSHAP call."""
        rows = [i for i, (_, kept, _) in enumerate(found) if kept]
        evidence: dict[int, explain.Evidence] = {}
        if rows:
            x = np.stack([found[i][0].x for i in rows])
            phi, bias = explain.pair_contributions(self.scorer.booster, x)
            names = self.scorer.bundle.feature_names
            base = explain.top_contributions(phi, bias, x, names)
            for i, ev in zip(rows, base, strict=True):
                it = found[i][0]
                near = explain.nearest_labelled(bank, class_id, it.embedding[None, :], it.video_id)
                evidence[i] = explain.with_neighbours([ev], near)[0]
        return [(it, kept, evidence.get(i)) for i, (it, kept, _) in enumerate(found)]

    # ------------------------------------------------------------------ labels by reference
    def reference_batch(
        self, class_id: int, video_id: str, starts: Sequence[int], marks: Sequence[int]
    ) -> LabelBatch:
        """The bank write of labels named by reference, from the kept embeddings; raises
        :class:`NotKept` naming the segments that are not kept, InputError for bad starts."""
        checked = labels.check_starts(starts, np.iinfo(np.int32).max)
        found = self.kept.get(class_id, [segment_id(video_id, int(s)) for s in checked.tolist()])
        missing = [int(s) for s, it in zip(checked.tolist(), found, strict=True) if it is None]
        if missing:
            raise NotKept(class_id, video_id, missing)
        emb = np.stack([it.embedding for it in found if it is not None]).astype(np.float32)
        return LabelBatch(class_id, video_id, checked, np.asarray(marks, np.int8), emb)


def _item(video_id: str, s: int, scores: F32, margins: F32, x: F32, emb: F32 | None) -> KeptItem:
    """The kept item of segment ``s`` of a video (its window: segments s-1 .. s+1 that exist)."""
    assert emb is not None
    lo = max(s - 1, 0)
    window = np.array(emb[lo : s + 2], dtype=np.float32)
    return KeptItem(
        video_id,
        s * SEGMENT_FRAMES,
        float(scores[s]),
        float(margins[s]),
        np.array(x, dtype=np.float32),
        window,
        s - lo,
    )


def _bare(e: IndexEntry, margin: float) -> KeptItem:
    """An indexed segment that is not kept, as an item without a row or embeddings."""
    empty = np.zeros((0,), np.float32)
    return KeptItem(e.video_id, e.start, e.score, margin, empty, np.zeros((1, 0), np.float32), 0)
