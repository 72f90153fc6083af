"""The CCRL GBM's objective, parameters and rounds, chosen on cross-fitted holdout scores.

Candidates: ``binary:logistic`` (the paper's pointwise loss: a probability per pair) and XGBoost's
learning-to-rank objectives ``rank:map``, ``rank:ndcg`` and ``rank:pairwise`` with the *class as
the query group* (the challenge ranks the segments of each class across the whole corpus, so a
query is a class and its documents are the rated segments of every video). Each objective is tried
with every parameter setting of :class:`training.ccrl.CcrlConfig` ``grid`` and every
``ROUND_STEP``-th round count up to ``max_rounds``; the winner is the highest cross-fitted mAP
(:mod:`training.crossfit`; exact ties keep the earlier objective of :data:`OBJECTIVES`, so
``binary:logistic`` first). XGBoost's default pair construction is kept for the ranking objectives.

What the score means: with ``binary:logistic`` the bundle's scores are probabilities in [0, 1];
with a ranking objective they are margins (any real number) whose *order within a class* is what
the model learned: they rank the segments of one class across videos (the query group spans every
video, so a margin is comparable across videos, as the per-class corpus index needs), but they are
neither probabilities nor comparable across classes. Everything downstream only orders the
segments of one class (the ranked lists, the index, ``top-segments``); the ensemble combines a
margin with the baselines' probabilities through within-list ranks only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from training.crossfit import Fitter, OofCurve, is_ranking, oof_curve

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

OBJECTIVES: tuple[str, ...] = ("binary:logistic", "rank:map", "rank:ndcg", "rank:pairwise")
"""The objectives tried, in tie-break order."""


def objective_params(base: dict[str, Any], objective: str) -> dict[str, Any]:
    """``base`` XGBoost params with ``objective`` (no evaluation metric: nothing is evaluated
    during training; the rounds are chosen on cross-fitted scores)."""
    p = {k: v for k, v in base.items() if k != "eval_metric"}
    p["objective"] = objective
    return p


@dataclass
class GbmChoice:
    """The chosen objective / parameters / rounds and what every candidate scored.

    Attributes:
        objective: the winner.
        params: its XGBoost params; rounds: its boosting rounds.
        oof_map: its cross-fitted mAP.
        oof_scores: float32 [N] the winner's cross-fitted score of every pair.
        tried: one row per (objective, grid entry): params, best rounds, cross-fitted mAP.
        runner_up: the best candidate of the other family (a ranking objective when the winner
            is ``binary:logistic``, else ``binary:logistic``), as ``{objective, params, rounds,
            oof_map}``, or None when only one family was tried.
    """

    objective: str
    params: dict[str, Any]
    rounds: int
    oof_map: float
    oof_scores: F32
    tried: list[dict[str, Any]] = field(default_factory=list)
    runner_up: dict[str, Any] | None = None

    def per_objective(self) -> dict[str, float]:
        """Objective -> its best cross-fitted mAP."""
        out: dict[str, float] = {}
        for row in self.tried:
            out[row["objective"]] = max(out.get(row["objective"], -1.0), row["oof_map"])
        return out

    def info(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "params": self.params,
            "rounds": self.rounds,
            "oof_map": self.oof_map,
            "per_objective_oof_map": self.per_objective(),
            "runner_up": self.runner_up,
            "tried": self.tried,
        }


def select_gbm(
    x: F32,
    y: F32,
    class_ids: I64,
    tokens: Sequence[str],
    fold: I64,
    params_for: Any,
    grid: Sequence[dict[str, float]],
    *,
    objectives: Sequence[str] = OBJECTIVES,
    max_rounds: int = 300,
    fitter: Fitter | None = None,
) -> GbmChoice:
    """Cross-fit every (objective, grid entry) and keep the best by cross-fitted mAP.

    Args:
        x, y, class_ids, tokens, fold: the rated pairs (see :func:`training.crossfit.oof_curve`).
        params_for: ``choice -> XGBoost params`` (e.g. ``CcrlConfig.params`` with a seed).
        grid: the parameter settings to try (``max_depth``, ``eta``, ``min_child_weight``).
        fitter: where the folds are trained (default: this process; see
            :data:`training.crossfit.Fitter`).
    """
    if not objectives:
        raise ValueError("no objective to try")
    unknown = sorted(set(objectives) - set(OBJECTIVES))
    if unknown:
        raise ValueError(f"unknown objective(s) {unknown} (expected some of {OBJECTIVES})")
    tried: list[dict[str, Any]] = []
    best: tuple[float, OofCurve, str] | None = None
    by_family: dict[bool, dict[str, Any]] = {}
    for objective in objectives:
        for choice in grid:
            curve = oof_curve(
                x,
                y,
                class_ids,
                tokens,
                fold,
                objective_params(params_for(choice), objective),
                max_rounds,
                fitter=fitter,
            )
            j = curve.best
            row = {
                "objective": objective,
                **{k: choice[k] for k in sorted(choice)},
                "rounds": curve.rounds[j],
                "oof_map": curve.maps[j],
            }
            tried.append(row)
            fam = is_ranking(objective)
            if fam not in by_family or row["oof_map"] > by_family[fam]["oof_map"]:
                by_family[fam] = {
                    "objective": objective,
                    "params": curve.params,
                    "rounds": curve.rounds[j],
                    "oof_map": curve.maps[j],
                }
            if best is None or curve.maps[j] > best[0]:
                best = (curve.maps[j], curve, objective)
    assert best is not None
    m, curve, objective = best
    j = curve.best
    other = by_family.get(not is_ranking(objective))
    return GbmChoice(objective, curve.params, curve.rounds[j], m, curve.scores[j], tried, other)
