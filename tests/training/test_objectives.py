"""The GBM's objective, parameters and rounds chosen on cross-fitted holdout scores."""

from __future__ import annotations

import numpy as np
import pytest

from service.features import FEATURE_NAMES
from training.ccrl import CcrlConfig, pairs_map
from training.crossfit import dmatrix, fit, oof_curve, video_folds
from training.objectives import OBJECTIVES, select_gbm


def _pairs(n_videos: int = 40, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Rated pairs of 3 classes: one informative feature (with noise), the rest noise."""
    rng = np.random.default_rng(seed)
    rows, y, cls, vid, tokens = [], [], [], [], []
    for v in range(n_videos):
        c = v % 3
        for s in range(4):
            label = float(s < 2)
            x = rng.normal(size=len(FEATURE_NAMES)).astype(np.float32)
            x[0] = c
            x[3] = label + rng.normal(scale=0.4)  # seg_prob: the signal
            rows.append(x)
            y.append(label)
            cls.append(c)
            vid.append(v)
            tokens.append(f"v{v}:{s * 5}")
    return (
        np.stack(rows),
        np.array(y, np.float32),
        np.array(cls, np.int64),
        np.array(vid, np.int64),
        np.array(tokens),
    )


def test_folds_are_balanced_by_video_and_seeded() -> None:
    f = video_folds(23, 5, seed=1)
    assert sorted(np.bincount(f).tolist()) == [4, 4, 5, 5, 5]
    assert np.array_equal(f, video_folds(23, 5, seed=1))
    assert not np.array_equal(f, video_folds(23, 5, seed=2))
    with pytest.raises(ValueError, match="at least 5"):
        video_folds(3, 5)


def test_ranking_rows_are_grouped_by_class() -> None:
    x, y, cls, _, _ = _pairs(9)
    order = np.random.default_rng(0).permutation(len(y))
    d, used = dmatrix(x[order], y[order], cls[order])
    assert np.all(np.diff(cls[order][used]) >= 0)
    assert d.num_row() == len(y)
    params = {"objective": "rank:pairwise", "max_depth": 2, "nthread": 1}
    booster = fit(x[order], y[order], cls[order], params, 5)
    assert booster.num_boosted_rounds() == 5


def test_cross_fitted_scores_never_see_their_video() -> None:
    x, y, cls, vid, tokens = _pairs(20)
    fold = video_folds(20, 4, seed=0)[vid]
    params = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3, "nthread": 1}
    curve = oof_curve(x, y, cls, list(tokens), fold, params, max_rounds=20, step=10)
    assert curve.rounds == [10, 20] and curve.scores.shape == (2, len(y))
    # fold 0's scores come from a model trained on folds 1..3 alone
    out = fold == 0
    alone = fit(x[~out], y[~out], cls[~out], params, 20)
    d, _ = dmatrix(x[out])
    np.testing.assert_allclose(curve.scores[1, out], alone.predict(d), rtol=1e-6)
    assert curve.maps[1] == pytest.approx(pairs_map(curve.scores[1], cls, list(tokens), y))


def test_select_gbm_keeps_the_best_objective_and_the_other_family() -> None:
    x, y, cls, vid, tokens = _pairs(30)
    fold = video_folds(30, 3, seed=0)[vid]
    cfg = CcrlConfig(nthread=1, max_rounds=20)
    ch = select_gbm(
        x,
        y,
        cls,
        list(tokens),
        fold,
        lambda c: cfg.params(c, 0),
        cfg.grid[:1],
        objectives=("binary:logistic", "rank:pairwise"),
        max_rounds=20,
    )
    per = ch.per_objective()
    assert set(per) == {"binary:logistic", "rank:pairwise"}
    assert ch.oof_map == max(per.values()) and per[ch.objective] == ch.oof_map
    assert ch.params["objective"] == ch.objective and "eval_metric" not in ch.params
    assert ch.runner_up is not None and ch.runner_up["objective"] != ch.objective
    assert ch.oof_scores.shape == y.shape and ch.rounds in (10, 20)
    assert ch.oof_map > 0.8  # the signal feature is found
    with pytest.raises(ValueError, match="unknown objective"):
        select_gbm(x, y, cls, list(tokens), fold, lambda c: {}, cfg.grid, objectives=("x",))
    assert OBJECTIVES[0] == "binary:logistic"
