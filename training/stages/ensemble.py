"""Stage 5 of ``ccrl train``: the ensemble of CCRL and the baselines, chosen on the holdout.

The ensemble is a weighted mean, within each class's list, of the members' probabilities (``mean``)
or of their normalized ranks (``rank``; :func:`training.submit.combine` does the arithmetic, the
same call ``ccrl submit`` and ``ccrl evaluate`` make). CCRL gets a weight from
:data:`ENSEMBLE_CCRL_WEIGHTS`; the other members share the rest equally. The method and the weight
are the pair with the best mAP over the rated pairs of the 10% holdout videos (ties: the plainer
average, the weight closest to 1/3). When CCRL's scores are margins (a ranking objective) only
ranks are averaged.

The ensemble is never below the best single model on the holdout, and it is kept only when its
gain is larger than the holdout can tell from chance: mAP is a mean over classes, so the gain is the
mean of the per-class AP differences, and it must exceed both :data:`ENSEMBLE_MARGIN` and one
standard error of that mean (the one-standard-error rule: a 10-video holdout gives a wide error, a
YouTube-8M holdout of ~4,700 videos and 1,000 classes a narrow one). A gain from one class alone is
exactly one standard error, so it is never enough. Otherwise the ensemble *is* the best single
member (weight 1, the others 0: its ranked lists are the member's own).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from training.baselines import SegmentSet
    from training.ccrl import PairSet
    from training.stages.baselines import FittedBaseline
    from training.stages.ccrl_fit import CcrlFit
    from training.stages.validate import Validate

ENSEMBLE_CCRL_WEIGHTS = (1 / 3, 0.5, 0.6, 0.7, 0.8, 0.9)
"""CCRL weights tried for the ensemble (1/3 = the plain average of three members)."""

METHODS = ("mean", "rank")
ENSEMBLE_MARGIN = 0.001
"""A combination must beat the best single member by more than this on the holdout."""


def pair_rows(segments: SegmentSet, pairs: PairSet) -> npt.NDArray[np.int64]:
    """Row of ``segments`` (the baselines' rated segments) of each rated pair: int64 [N]."""
    seg_keys = zip(segments.video.tolist(), segments.segment.tolist(), strict=True)
    row_of = {key: i for i, key in enumerate(seg_keys)}
    return np.array(
        [row_of[(int(v), int(s))] for v, s in zip(pairs.video, pairs.segment, strict=True)]
    )


def _weightings(
    members: list[str], methods: tuple[str, ...] = METHODS
) -> list[tuple[str, float, list[float]]]:
    """Every ``(method, ccrl weight, weights [M] in member order)`` to try."""
    n_other = max(len(members) - 1, 1)
    ccrl_weights = ENSEMBLE_CCRL_WEIGHTS if "ccrl" in members else (1 / len(members),)
    return [
        (method, w, [w if m == "ccrl" else (1 - w) / n_other for m in members])
        for method in methods
        for w in ccrl_weights
    ]


def _combined(
    scores: dict[str, npt.NDArray[np.float32]],
    class_ids: npt.NDArray[np.int64],
    method: str,
    weights: list[float],
) -> npt.NDArray[np.float32]:
    """The members' scores (each float [N]) combined within each class: float32 [N]."""
    from training.submit import combine

    members = sorted(scores)
    out = np.zeros(len(class_ids), np.float32)
    for c in np.unique(class_ids).tolist():
        idx = np.flatnonzero(class_ids == c)
        out[idx] = combine(np.stack([scores[m][idx] for m in members]), method, weights)
    return out


def choose_weights(
    pairs: PairSet,
    tokens: list[str],
    hold: npt.NDArray[np.bool_],
    member_scores: dict[str, npt.NDArray[np.float32]],
    *,
    methods: tuple[str, ...] = METHODS,
) -> dict[str, Any]:
    """Pick the averaging (``mean`` of probabilities or ``rank``) and CCRL's weight, or the best
    single member when no combination beats it by more than :data:`ENSEMBLE_MARGIN` and one
    standard error (:func:`gain_standard_error`).

    Args:
        pairs: the rated validate pairs (N of them).
        tokens: [N] their segment ids.
        hold: bool [N], the pairs of the holdout videos (the only ones scored here).
        member_scores: member name -> float [N] scores (defined at least on the holdout pairs).
        methods: the averaging methods to try (``rank`` only for margins).

    Returns:
        ``{"members", "holdout_map": {member: mAP}, "tried": [{method, ccrl_weight, map}],
        "method", "weights" (member order), "map", "fallback": the single member or None,
        "gain" and "gain_se": the best combination's gain over the best member and its standard
        error}``.
    """
    from training.ccrl import pairs_map

    sel = np.flatnonzero(hold)
    cls = pairs.class_ids[sel]
    toks = [tokens[i] for i in sel.tolist()]
    y = pairs.y[sel]
    scores = {m: member_scores[m][sel] for m in sorted(member_scores)}
    single = {m: pairs_map(s, cls, toks, y) for m, s in scores.items()}
    result: dict[str, Any] = {"members": list(scores), "holdout_map": single, "tried": []}
    best_key: tuple[float, float] = (-1.0, 0.0)
    for method, w, weights in _weightings(list(scores), methods):
        m = pairs_map(_combined(scores, cls, method, weights), cls, toks, y)
        result["tried"].append({"method": method, "ccrl_weight": round(w, 4), "map": m})
        key = (m, -abs(w - 1 / 3))  # ties: the plainer average
        if key > best_key:
            best_key = key
            result.update(method=method, weights=[round(x, 6) for x in weights], map=m)
    top = max(single, key=lambda k: (single[k], k == "ccrl"))
    best = _combined(scores, cls, result["method"], result["weights"])
    se = gain_standard_error(best, scores[top], cls, toks, y)
    result.update(fallback=None, gain=result["map"] - single[top], gain_se=se)
    if result["gain"] <= max(ENSEMBLE_MARGIN, se) * (1 + 1e-9):  # equal within rounding: not larger
        weights = [1.0 if m == top else 0.0 for m in result["members"]]
        result.update(method="mean", weights=weights, map=single[top], fallback=top)
    return result


def gain_standard_error(
    scores: npt.NDArray[np.float32],
    base: npt.NDArray[np.float32],
    class_ids: npt.NDArray[np.int64],
    tokens: list[str],
    labels: npt.NDArray[np.int64],
) -> float:
    """The standard error of ``scores``' mAP gain over ``base`` (each float [N], same pairs): the
    spread of the per-class AP differences over the square root of their number (0.0 for fewer
    than 2 classes)."""
    from training.ccrl import pairs_class_ap

    a = pairs_class_ap(scores, class_ids, tokens, labels)
    b = pairs_class_ap(base, class_ids, tokens, labels)
    diff = np.asarray([a[c] - b[c] for c in a], np.float64)
    return float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0


def choose_ensemble(
    fit: CcrlFit, val: Validate, segments: SegmentSet, baselines: dict[str, FittedBaseline]
) -> dict[str, Any]:
    """Method and weights of the ensemble of CCRL and ``baselines`` (see :func:`choose_weights`)."""
    pairs = fit.pairs
    rows = pair_rows(segments, pairs)
    members = {"ccrl": fit.model.holdout_scores}
    for name, b in baselines.items():
        members[name] = b.result.holdout_probs[rows, pairs.class_ids]
    margins = fit.gbm is not None and fit.gbm.objective.startswith("rank:")
    ensemble = choose_weights(
        pairs,
        fit.tokens,
        val.holdout[pairs.video],
        members,
        methods=("rank",) if margins else METHODS,
    )
    rounded = {k: round(v, 4) for k, v in ensemble["holdout_map"].items()}
    print(f"  holdout mAP: {json.dumps(rounded)}")
    gain = f"best combination's gain {ensemble['gain']:+.4f} ± {ensemble['gain_se']:.4f}"
    print(
        f"  ensemble: {ensemble['method']} of {ensemble['members']} with weights "
        f"{ensemble['weights']} (holdout mAP {ensemble['map']:.4f}; {gain})"
        + (f"; the best single member, {ensemble['fallback']}" if ensemble["fallback"] else "")
    )
    return ensemble
