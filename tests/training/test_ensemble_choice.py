"""The ensemble's choice on the holdout (training.stages.ensemble.choose_weights): a combination is
kept only when its mAP gain over the best member is larger than one standard error of the
per-class differences, else the ensemble is that member."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from training.ccrl import pairs_class_ap, pairs_map
from training.stages.ensemble import ENSEMBLE_MARGIN, choose_weights, gain_standard_error

CLASSES, PER_CLASS = 40, 10


def _pairs() -> tuple[SimpleNamespace, list[str]]:
    """40 classes of 10 rated pairs each (5 positive), each pair its own segment."""
    cls = np.repeat(np.arange(CLASSES), PER_CLASS)
    y = np.tile(np.array([1, 0] * (PER_CLASS // 2)), CLASSES)
    tokens = [f"v{i}:{5 * (i % 60)}" for i in range(cls.size)]
    return SimpleNamespace(class_ids=cls, y=y), tokens


def test_pairs_map_is_the_mean_of_the_class_aps() -> None:
    pairs, tokens = _pairs()
    s = np.random.default_rng(0).random(pairs.y.size)
    per_class = pairs_class_ap(s, pairs.class_ids, tokens, pairs.y)
    assert len(per_class) == CLASSES
    assert pairs_map(s, pairs.class_ids, tokens, pairs.y) == pytest.approx(
        np.mean(list(per_class.values()))
    )


def test_two_independent_noisy_members_are_combined() -> None:
    pairs, tokens = _pairs()
    rng = np.random.default_rng(1)
    y = pairs.y.astype(np.float32)
    members = {m: (y + rng.normal(0, 0.8, y.size)).astype(np.float32) for m in ("ccrl", "lstm")}
    hold = np.ones(y.size, bool)
    out = choose_weights(pairs, tokens, hold, members, methods=("mean",))
    assert out["fallback"] is None
    assert out["gain"] > out["gain_se"] > 0
    assert out["map"] > max(out["holdout_map"].values())


def test_a_gain_on_one_class_and_a_loss_on_another_is_not_enough() -> None:
    pairs, tokens = _pairs()
    rng = np.random.default_rng(2)
    y = pairs.y.astype(np.float32)
    sign = 2 * y - 1
    ccrl = (y + rng.normal(0, 0.6, y.size)).astype(np.float32)
    other = ccrl.copy()  # the same lists on 38 of the 40 classes
    c0, c1 = pairs.class_ids == 0, pairs.class_ids == 1
    noise = rng.normal(0, 2.0, int(c0.sum())).astype(np.float32)
    ccrl[c0], other[c0] = y[c0] + noise, y[c0] - noise  # their mean is perfect on class 0
    ccrl[c1] = sign[c1]  # perfect on class 1, where their mean is noise
    other[c1] = -sign[c1] + rng.normal(0, 0.5, int(c1.sum())).astype(np.float32)
    members = {"ccrl": ccrl, "lstm": other}
    hold = np.ones(y.size, bool)
    out = choose_weights(pairs, tokens, hold, members, methods=("mean",))
    best_single = max(out["holdout_map"].values())
    assert out["gain"] > ENSEMBLE_MARGIN  # the fixed margin alone would keep the combination
    assert out["gain"] <= out["gain_se"]
    assert out["fallback"] == max(out["holdout_map"], key=out["holdout_map"].get)
    assert out["map"] == best_single and sorted(out["weights"]) == [0.0, 1.0]


def test_a_gain_on_one_class_alone_is_not_enough() -> None:
    pairs, tokens = _pairs()
    rng = np.random.default_rng(4)
    y = pairs.y.astype(np.float32)
    ccrl = (y + rng.normal(0, 0.6, y.size)).astype(np.float32)
    other = ccrl.copy()  # the same lists on 39 of the 40 classes
    c0 = pairs.class_ids == 0
    noise = rng.normal(0, 2.0, int(c0.sum())).astype(np.float32)
    ccrl[c0], other[c0] = y[c0] + noise, y[c0] - noise  # their mean is perfect on class 0
    out = choose_weights(pairs, tokens, np.ones(y.size, bool), {"ccrl": ccrl, "lstm": other})
    assert out["gain"] > ENSEMBLE_MARGIN
    assert out["gain"] == pytest.approx(out["gain_se"])  # one class: the gain is one error
    assert out["fallback"] is not None


def test_gain_standard_error_of_identical_scores_is_zero() -> None:
    pairs, tokens = _pairs()
    s = np.random.default_rng(3).random(pairs.y.size).astype(np.float32)
    assert gain_standard_error(s, s, pairs.class_ids, tokens, pairs.y) == 0.0
