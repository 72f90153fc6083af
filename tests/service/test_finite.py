"""No non-finite value past the decoder: the scorer's own checks before XGBoost, the bank and the
index turn one into a 422-class error naming the stage and the first position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.bundle import load_bundle
from service.decode import InputError
from service.features import FEATURE_NAMES, build_pair_features
from service.finite import NULLABLE_FEATURES, NonFiniteError, check_finite, check_pair_matrix
from service.scorer import Scorer
from service.yt8m import Video


@pytest.fixture(scope="module")
def scorer(sim_bundle: Path) -> Scorer:
    return Scorer(load_bundle(sim_bundle), intra_threads=1, xgb_nthread=1, providers="cpu")


def test_frames_that_bypass_the_decoder_never_reach_xgboost(
    scorer: Scorer, test_videos: list[Video]
) -> None:
    frames = test_videos[0].features().copy()
    frames[7, 3] = np.inf  # what the decoder refuses, handed to the scorer directly
    with pytest.raises(NonFiniteError) as err:
        scorer.localize(frames, scorer.bundle.bank, max_classes=3)
    assert isinstance(err.value, InputError) and err.value.field == "frames"
    assert "non-finite value" in str(err.value) and "before anything was stored" in str(err.value)
    with pytest.raises(NonFiniteError, match=r"segment_embeddings|segment_probs|video_probs"):
        scorer.embed(frames)  # the label route's path: never a NaN into the bank


def test_the_pair_matrix_check_allows_missing_values_only_where_they_mean_missing(
    scorer: Scorer, test_videos: list[Video]
) -> None:
    cand = scorer.run_candidate(test_videos[1].features())
    classes = np.arange(3, dtype=np.int64)
    pairs = build_pair_features(
        cand.video_probs,
        cand.segment_probs,
        cand.segment_embeddings,
        classes,
        scorer.bundle.bank,
        None,
        max_sim=False,  # the max-cosine columns are NaN on purpose
    )
    check_pair_matrix(pairs.x)  # the real matrix passes, NaN columns included
    assert np.isnan(pairs.x[:, FEATURE_NAMES.index("sim_pos_max")]).all()
    for name, value in (("seg_prob", np.nan), ("video_prob", np.inf), ("sim_pos_max", -np.inf)):
        x = pairs.x.copy()
        x[2, FEATURE_NAMES.index(name)] = value
        with pytest.raises(NonFiniteError, match=f"row 2, feature '{name}'"):
            check_pair_matrix(x)
    assert set(NULLABLE_FEATURES) <= set(FEATURE_NAMES)


def test_check_finite_names_the_stage_and_the_first_position() -> None:
    check_finite("scores", np.zeros((2, 3), np.float32))
    a = np.zeros((2, 3), np.float32)
    a[1, 2] = np.nan
    with pytest.raises(NonFiniteError, match=r"scores\[1\]\[2\] is NaN"):
        check_finite("scores", a)
