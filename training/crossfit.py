"""Cross-fitted holdout scores for the pairwise GBM: every rated ``validate/`` video held out once.

One 10% holdout of ``validate/`` is about 50 videos of the default corpus (70 of the outside one),
about one rated video per class: the holdout mAP of two settings then differs by more than the
settings do (on the default corpus the single holdout ranked ``rank:pairwise`` first, 0.979 vs
0.974, and the test split the other way round, 0.944 vs 0.951). So the settings that the holdout
chooses (generator and embedding, XGBoost objective, parameters and rounds, candidate generation)
are chosen on *cross-fitted* holdout scores: the rated videos are split into ``folds`` groups by
video (seeded), a model is trained on all groups but one and scores the held-out group, and the
scores of all groups together (every pair scored by a model that never saw its video) are ranked
with the challenge metric (:func:`training.ccrl.pairs_map`). Every setting is scored at
``ROUND_STEP``-spaced numbers of boosting rounds from one training run per fold
(``iteration_range``), so the number of rounds is chosen the same way, without early stopping.

Ranking objectives (``rank:*``) need the pairs grouped by query: the class is the query
(:func:`dmatrix`, rows sorted by class with ``qid``); their scores are margins, not probabilities.

Every fit goes through a :data:`Fitter` (``rows, params, rounds -> booster``, bound to the rated
pairs): :class:`LocalFitter` in this process, or ``training.ccrl_dask.DaskFitter`` on Dask workers
(``ccrl train --workers``). The rule (folds, round counts, the metric) is the same code either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from service.features import FEATURE_NAMES, FEATURE_TYPES

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

N_FOLDS = 5
ROUND_STEP = 10
RANK_PREFIX = "rank:"


def is_ranking(objective: str) -> bool:
    """True for XGBoost's learning-to-rank objectives (scores are margins)."""
    return objective.startswith(RANK_PREFIX)


def video_folds(num_videos: int, folds: int = N_FOLDS, seed: int = 0) -> I64:
    """The fold of every video: int64 [V] in 0..folds-1, balanced, seeded."""
    if num_videos < folds:
        raise ValueError(f"need at least {folds} rated videos for {folds} folds, got {num_videos}")
    perm = np.random.default_rng([seed, 7717]).permutation(num_videos)
    out = np.empty(num_videos, np.int64)
    out[perm] = np.arange(num_videos) % folds
    return out


def dmatrix(x: F32, y: F32 | None = None, qid: I64 | None = None) -> tuple[xgb.DMatrix, I64]:
    """A DMatrix of pair rows (class id categorical, NaN missing) and the row order used.

    With ``qid`` (the class of each row, for ranking objectives) the rows are sorted by it, as
    XGBoost requires; the returned order maps DMatrix row i to input row ``order[i]``.
    """
    order = np.arange(len(x), dtype=np.int64)
    if qid is not None:
        order = np.argsort(qid, kind="stable").astype(np.int64)
        x = x[order]
        y = None if y is None else y[order]
    d = xgb.DMatrix(
        x,
        label=y,
        feature_names=list(FEATURE_NAMES),
        feature_types=list(FEATURE_TYPES),
        enable_categorical=True,
        missing=np.nan,
    )
    if qid is not None:
        d.set_info(qid=qid[order])
    return d, order


def fit(x: F32, y: F32, class_ids: I64, params: dict[str, Any], rounds: int) -> xgb.Booster:
    """Train a booster on pair rows (grouped by class for a ranking objective)."""
    qid = class_ids if is_ranking(str(params["objective"])) else None
    d, _ = dmatrix(x, y, qid)
    return xgb.train(params, d, num_boost_round=int(rounds))


Fitter = Callable[[I64, dict[str, Any], int], xgb.Booster]
"""``(rows: int64 indices into the rated pairs, params, rounds) -> booster`` trained on those rows
(grouped by class for a ranking objective)."""


@dataclass
class LocalFitter:
    """The :data:`Fitter` of one process: :func:`fit` on the selected rows."""

    x: F32
    y: F32
    class_ids: I64

    def __call__(self, rows: I64, params: dict[str, Any], rounds: int) -> xgb.Booster:
        return fit(self.x[rows], self.y[rows], self.class_ids[rows], params, rounds)


@dataclass
class OofCurve:
    """Cross-fitted scores of one parameter setting at several numbers of rounds.

    Attributes:
        params: the XGBoost params.
        rounds: the round counts scored, [R].
        maps: cross-fitted mAP at each round count, [R].
        scores: float32 [R, N] the cross-fitted score of every pair at each round count.
    """

    params: dict[str, Any]
    rounds: list[int]
    maps: list[float]
    scores: F32

    @property
    def best(self) -> int:
        """Index of the best round count (ties: fewer rounds)."""
        return int(np.argmax(np.asarray(self.maps)))


def oof_curve(
    x: F32,
    y: F32,
    class_ids: I64,
    tokens: Sequence[str],
    fold: I64,
    params: dict[str, Any],
    max_rounds: int,
    step: int = ROUND_STEP,
    fitter: Fitter | None = None,
) -> OofCurve:
    """Cross-fit ``params`` (one run of ``max_rounds`` per fold) and score every round count.

    Args:
        x: float32 [N, NF] pair rows; y: float32 [N] labels; class_ids: int64 [N].
        tokens: [N] segment ids (``"vid:start"``) for the metric.
        fold: int64 [N] the fold of each pair (its video's).
        fitter: trains a fold's booster on its rows (default :class:`LocalFitter` of x, y).
    """
    from training.ccrl import pairs_map

    rounds = list(range(step, max_rounds + 1, step)) or [max_rounds]
    scores = np.zeros((len(rounds), len(y)), np.float32)
    fitter = fitter or LocalFitter(x, y, class_ids)
    for f in np.unique(fold).tolist():
        out = fold == f
        booster = fitter(np.flatnonzero(~out), params, rounds[-1])
        d, _ = dmatrix(x[out])
        for j, r in enumerate(rounds):
            scores[j, out] = booster.predict(d, iteration_range=(0, r))
    maps = [pairs_map(s, class_ids, tokens, y) for s in scores]
    return OofCurve(dict(params), rounds, maps, scores)
