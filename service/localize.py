"""Localize one video and enter its scores into the corpus index: ``POST /localize`` without HTTP.

The steps, each timed (seconds by stage name, the ``Server-Timing`` of the answer):

1. ``decode``: the FRAMES payloads -> float32 [F, 1152] (:func:`service.decode.decode_video`);
2. ``bank``: a snapshot of the labelled-embedding bank (:meth:`BankStore.snapshot`);
3. ``candidate``, ``features``, ``gbm``, ``rank``: :meth:`service.scorer.Scorer.localize`;
4. ``index``: the scores of every (segment, class) pair replace the video's entries in the corpus
   index (:meth:`IndexStore.put_video`), only for a request with a ``video_id`` that asks for it;
   then the ``keeper`` (the review store, :meth:`service.review.Reviewer.keep`) is offered them.

With ``explain`` the query also gets the evidence of every returned segment (stage ``explain``,
:func:`service.explain.explain_localization`); without it nothing of that runs.

A store that cannot be reached at step 4 does not fail the request: the scores are still answered,
``indexed`` is False and a warning says why. A video already in the index is only re-indexed when
the query says ``overwrite``: else :class:`~service.stores.base.VideoExists` (a 409), checked before
any work and again, atomically, by the write itself. Who may index is the web layer's business
(:mod:`service.api.auth`). :meth:`Localizer.score` (steps 1-3) and
:meth:`Localizer.index` (step 4) are separate so that a caller can bound concurrent scoring without
holding a scoring slot during the index write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.config import Settings
from service.decode import decode_video
from service.explain import Evidence, explain_localization
from service.scorer import Localization, Scorer
from service.stores.base import BankStore, IndexStore, StoreUnavailable, VideoExists

log = logging.getLogger("ccrl.localize")


@dataclass(frozen=True)
class LocalizeQuery:
    """What to localize: one video's frames and the caller's options (None = the settings').

    Attributes:
        rgb: the FRAMES payload of the visual features, [F, 1024] (see :mod:`service.decode`).
        audio: the FRAMES payload of the audio features, [F, 128].
        video_id: the video's id: its own bank entries are left out of the similarities, and the
            index needs it.
        classes: score these classes (any vocabulary id) instead of the candidate classes.
        max_classes: how many candidate classes to score.
        max_segments: segments answered per class.
        index: enter the scores into the corpus index (needs ``video_id``).
        overwrite: replace the index entries of a video that is indexed already.
        explain: add the evidence of every returned segment (:mod:`service.explain`).
    """

    rgb: Any
    audio: Any
    video_id: str | None = None
    classes: Sequence[int] | None = None
    max_classes: int | None = None
    max_segments: int | None = None
    index: bool = True
    overwrite: bool = False
    explain: bool = False

    @property
    def index_wanted(self) -> bool:
        """The query has a video id and asks for the index."""
        return self.video_id is not None and self.index


@dataclass
class Localized:
    """The outcome of one video.

    Attributes:
        video_id: the query's video id.
        localization: the scored classes and every pair's score.
        timings: stage name -> seconds, in the order the stages ran.
        index_wanted: the query has a video id and asks for the index.
        overwrite: the query may replace the video's index entries.
        indexed: the scores entered the corpus index.
        indexed_segments: how many (segment, class) entries were written to it.
        warnings: what went wrong without failing the request (an unreachable index).
        evidence: with ``explain``, one list per scored class (order of
            ``localization.classes``) of the returned segments' evidence.
    """

    video_id: str | None
    localization: Localization
    timings: dict[str, float]
    index_wanted: bool = False
    overwrite: bool = False
    indexed: bool = False
    indexed_segments: int = 0
    warnings: list[str] = field(default_factory=list)
    evidence: list[list[Evidence]] | None = None


class Localizer:
    """Decode -> score -> index for one process: a scorer, the two stores and the settings' limits
    (``min_frames``, ``max_frames``, ``max_classes``, ``max_segments``, ``min_video_score``)."""

    def __init__(
        self,
        scorer: Scorer,
        bank: BankStore,
        index: IndexStore,
        settings: Settings,
        keeper: Callable[[Localized], int] | None = None,
    ) -> None:
        self.scorer = scorer
        self.bank = bank
        self.index_store = index
        self.settings = settings
        self.keeper = keeper
        # the settings win; else what training chose on the holdout (the bundle's manifest)
        max_classes, min_score = scorer.bundle.candidate_defaults
        self.max_classes = settings.max_classes or max_classes
        self.min_video_score = (
            min_score if settings.min_video_score is None else settings.min_video_score
        )

    def score(self, query: LocalizeQuery, *, started: float | None = None) -> Localized:
        """Steps 1-3: decode the frames, snapshot the bank, score the video. Bad input raises
        :class:`~service.decode.InputError` or :class:`~service.scorer.UnknownClassError`.

        ``started``: the ``time.perf_counter()`` at which work on the request began (the parsing of
        its body, say); the ``decode`` stage counts from it (default: now).
        """
        s = self.settings
        t0 = time.perf_counter() if started is None else started
        if query.index_wanted and not query.overwrite and self._indexed(str(query.video_id)):
            raise VideoExists(str(query.video_id))  # before any work
        frames = decode_video(
            query.rgb, query.audio, min_frames=s.min_frames, max_frames=s.max_frames
        )
        t1 = time.perf_counter()
        bank = self.bank.snapshot()
        timings = {"decode": t1 - t0, "bank": time.perf_counter() - t1}
        loc = self.scorer.localize(
            frames,
            bank,
            video_id=query.video_id,
            classes=query.classes,
            max_classes=query.max_classes or self.max_classes,
            max_segments=query.max_segments or s.max_segments,
            min_video_score=self.min_video_score,
        )
        timings.update(loc.timings)
        done = Localized(
            query.video_id,
            loc,
            timings,
            index_wanted=query.index_wanted,
            overwrite=query.overwrite,
        )
        if query.explain:
            t2 = time.perf_counter()
            done.evidence = explain_localization(
                self.scorer.booster, self.scorer.bundle.feature_names, loc, bank, query.video_id
            )
            timings["explain"] = time.perf_counter() - t2
        return done

    def _indexed(self, video_id: str) -> bool:
        """Whether the video is indexed; False when the store cannot tell (the write warns then)."""
        try:
            return self.index_store.has_video(video_id)
        except StoreUnavailable:
            return False

    def index(self, done: Localized) -> Localized:
        """Step 4 (when wanted): write the scores to the index, all or nothing; an unreachable
        store becomes a warning on ``done``, never an error; a video indexed meanwhile (without
        ``overwrite``) raises :class:`VideoExists`. Returns ``done``, updated."""
        if not done.index_wanted or done.video_id is None:
            return done
        t = time.perf_counter()
        try:
            n = self.index_store.put_video(
                done.video_id, done.localization.index_entries(), overwrite=done.overwrite
            )
            done.indexed, done.indexed_segments = True, n
            if self.keeper is not None:
                self.keeper(done)
        except StoreUnavailable as e:
            if done.indexed:  # the scores are in; only the review store missed them
                log.warning("indexed, review store not updated: %s", e)
            else:
                done.warnings.append(f"not indexed: {e}")
        done.timings["index"] = time.perf_counter() - t
        return done

    def localize(self, query: LocalizeQuery) -> Localized:
        """Every step of one video: :meth:`score`, then :meth:`index`."""
        return self.index(self.score(query))
