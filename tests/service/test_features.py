"""Pair feature builder: shapes, names, SIM sums vs brute force, own-video exclusion, leakage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.bank import ClassBank, unit_rows
from service.features import CATEGORICAL, FEATURE_NAMES, FEATURE_TYPES, build_pair_features

C, D, S = 12, 16, 9
COL = {n: i for i, n in enumerate(FEATURE_NAMES)}


def _bank(rng: np.random.Generator, n: int = 80, videos: int = 15) -> ClassBank:
    emb = rng.normal(size=(n, D)).astype(np.float32)
    cls = rng.integers(0, C, n)
    lab = rng.integers(0, 2, n)
    vid = [f"v{int(i)}" for i in rng.integers(0, videos, n)]
    start = rng.integers(0, 20, n) * 5
    return ClassBank.from_entries(emb, cls, lab, vid, start, num_classes=C)


def _video(rng: np.random.Generator, s: int = S) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vp = rng.random(C).astype(np.float32)
    sp = rng.random((s, C)).astype(np.float32)
    se = rng.normal(size=(s, D)).astype(np.float32)
    return vp, sp, se


def _brute_sims(
    bank: ClassBank, emb: np.ndarray, cls: int, label: int, video: str | None
) -> tuple[float, int, float]:
    """Sum, count and max of cosines to the entries of (cls, label) from other videos (a loop)."""
    total, count, best = 0.0, 0, -np.inf
    for i in range(len(bank)):
        if bank.emb_class[i] != cls or bank.emb_label[i] != label or bank.emb_video[i] == video:
            continue
        e = bank.emb[i]
        cos = float(np.dot(emb, e) / (np.linalg.norm(emb) * np.linalg.norm(e)))
        total += cos
        count += 1
        best = max(best, cos)
    return total, count, best


def test_names_shapes_and_row_order() -> None:
    rng = np.random.default_rng(0)
    bank = _bank(rng)
    vp, sp, se = _video(rng)
    classes = np.array([3, 0, 7])
    pm = build_pair_features(vp, sp, se, classes, bank, "v1")
    assert FEATURE_NAMES[0] == "class_id" and CATEGORICAL == ("class_id",)
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == len(FEATURE_TYPES)
    assert pm.x.shape == (S * 3, len(FEATURE_NAMES)) and pm.x.dtype == np.float32
    np.testing.assert_array_equal(pm.class_ids, np.repeat(classes, S))
    np.testing.assert_array_equal(pm.segment_index, np.tile(np.arange(S), 3))
    x = pm.x.reshape(3, S, -1)
    np.testing.assert_array_equal(x[:, :, COL["class_id"]], np.repeat(classes, S).reshape(3, S))
    np.testing.assert_allclose(x[1, :, COL["seg_prob"]], sp[:, 0])
    np.testing.assert_allclose(x[2, :, COL["video_prob"]], vp[7])
    # context: neighbours with NaN at the edges, rank within the video
    assert np.isnan(x[0, 0, COL["seg_prob_prev"]]) and np.isnan(x[0, -1, COL["seg_prob_next"]])
    np.testing.assert_allclose(x[0, 1:, COL["seg_prob_prev"]], sp[:-1, 3])
    np.testing.assert_allclose(x[0, :-1, COL["seg_prob_next"]], sp[1:, 3])
    best = int(np.argmax(sp[:, 3]))
    assert x[0, best, COL["seg_prob_rank"]] == 0.0
    assert x[0, int(np.argmin(sp[:, 3])), COL["seg_prob_rank"]] == 1.0
    assert x[0, 0, COL["video_class_rank"]] == float((vp > vp[3]).sum())
    assert x[0, 4, COL["seg_class_rank"]] == float((sp[4] > sp[4, 3]).sum())
    np.testing.assert_allclose(x[0, 0, COL["seg_prob_smooth"]], sp[:2, 3].mean(), rtol=1e-6)
    np.testing.assert_allclose(x[0, 4, COL["seg_prob_smooth"]], sp[3:6, 3].mean(), rtol=1e-6)
    diff = x[:, :, COL["sim_mean_diff"]]
    np.testing.assert_array_equal(x[:, 1:, COL["sim_mean_diff_prev"]], diff[:, :-1])
    np.testing.assert_array_equal(x[:, :-1, COL["sim_mean_diff_next"]], diff[:, 1:])
    pos, neg = x[:, 0, COL["pos_count"]], x[:, 0, COL["neg_count"]]
    np.testing.assert_allclose(x[:, 0, COL["class_pos_rate"]], pos / (pos + neg), rtol=1e-6)


def test_sim_features_equal_brute_force_with_own_video_excluded() -> None:
    rng = np.random.default_rng(1)
    bank = _bank(rng)
    vp, sp, se = _video(rng)
    own = "v3"
    assert len(bank.video_entries(own)) > 0
    classes = np.unique(bank.emb_class[bank.video_entries(own)])
    pm = build_pair_features(vp, sp, se, classes, bank, own)
    x = pm.x.reshape(len(classes), S, -1)
    for k, c in enumerate(classes.tolist()):
        for s in range(S):
            ps, pn, pmax = _brute_sims(bank, se[s], c, 1, own)
            ns, nn, nmax = _brute_sims(bank, se[s], c, 0, own)
            row = x[k, s]
            assert row[COL["pos_count"]] == pn and row[COL["neg_count"]] == nn
            assert row[COL["sim_pos_sum"]] == pytest.approx(ps, abs=1e-5)
            assert row[COL["sim_neg_sum"]] == pytest.approx(ns, abs=1e-5)
            if pn:
                assert row[COL["sim_pos_mean"]] == pytest.approx(ps / pn, abs=1e-5)
                assert row[COL["sim_pos_max"]] == pytest.approx(pmax, abs=1e-5)
            else:
                assert np.isnan(row[COL["sim_pos_mean"]]) and np.isnan(row[COL["sim_pos_max"]])
            if nn:
                assert row[COL["sim_neg_max"]] == pytest.approx(nmax, abs=1e-5)


def test_own_video_entries_are_excluded_not_others() -> None:
    rng = np.random.default_rng(2)
    vp, sp, se = _video(rng)
    # one class with one positive from the scored video and one from another video
    emb = rng.normal(size=(2, D)).astype(np.float32)
    bank = ClassBank.from_entries(emb, [5, 5], [1, 1], ["me", "other"], [0, 0], num_classes=C)
    pm = build_pair_features(vp, sp, se, np.array([5]), bank, "me")
    u = unit_rows(se)
    expected = u @ unit_rows(emb)[1]
    np.testing.assert_allclose(pm.x[:, COL["sim_pos_sum"]], expected, atol=1e-6)
    np.testing.assert_allclose(pm.x[:, COL["sim_pos_max"]], expected, atol=1e-6)
    assert (pm.x[:, COL["pos_count"]] == 1).all()
    # without a video id (a new video) both entries count
    pm2 = build_pair_features(vp, sp, se, np.array([5]), bank, None)
    assert (pm2.x[:, COL["pos_count"]] == 2).all()


def test_leakage_own_labels_do_not_change_own_rows() -> None:
    """No feature of a training pair uses its own video's labels: flip, remove or add labels of the
    video in the bank and its feature rows stay the same (up to float rounding of the sums)."""
    rng = np.random.default_rng(3)
    bank = _bank(rng)
    vp, sp, se = _video(rng)
    own = "v4"
    ix = bank.video_entries(own)
    assert len(ix) > 0
    classes = np.arange(C)
    base = build_pair_features(vp, sp, se, classes, bank, own).x

    flipped_labels = bank.emb_label.copy()
    flipped_labels[ix] = 1 - flipped_labels[ix]
    flipped = ClassBank.from_entries(
        bank.emb, bank.emb_class, flipped_labels, bank.emb_video, bank.emb_start, num_classes=C
    )
    removed = bank.without_video(own)
    added = bank.add(
        rng.normal(size=(6, D)),
        np.array([0, 1, 2, 3, 4, 5]),
        np.ones(6),
        [own] * 6,
        np.arange(6) * 5 + 100,
    )
    for other in (flipped, removed, added):
        got = build_pair_features(vp, sp, se, classes, other, own).x
        np.testing.assert_allclose(got, base, rtol=1e-5, atol=1e-5, equal_nan=True)
    # ... while another video's labels do change the rows (the test can fail)
    changed = bank.without_video("v5" if own != "v5" else "v6")
    got = build_pair_features(vp, sp, se, classes, changed, own).x
    assert not np.allclose(got, base, equal_nan=True)


def test_max_sim_off_gives_nan_and_same_other_columns() -> None:
    rng = np.random.default_rng(4)
    bank = _bank(rng)
    vp, sp, se = _video(rng)
    on = build_pair_features(vp, sp, se, np.arange(C), bank, "v1").x
    off = build_pair_features(vp, sp, se, np.arange(C), bank, "v1", max_sim=False).x
    maxcols = [COL["sim_pos_max"], COL["sim_neg_max"], COL["sim_max_diff"]]
    assert np.isnan(off[:, maxcols]).all()
    rest = [i for i in range(len(FEATURE_NAMES)) if i not in maxcols]
    np.testing.assert_array_equal(on[:, rest], off[:, rest])


def test_edge_cases_and_errors() -> None:
    rng = np.random.default_rng(5)
    bank = _bank(rng)
    vp, sp, se = _video(rng, s=1)
    one = build_pair_features(vp, sp, se, np.array([2]), bank, None)
    assert one.x.shape == (1, len(FEATURE_NAMES))
    assert one.x[0, COL["seg_prob_rank"]] == 0.0 and np.isnan(one.x[0, COL["seg_prob_prev"]])
    vp0, sp0, se0 = _video(rng, s=0)
    assert len(build_pair_features(vp0, sp0, se0, np.array([2]), bank)) == 0
    empty = ClassBank.empty(C, D)
    x = build_pair_features(*_video(rng), np.array([1, 2]), empty, "v1").x
    assert (x[:, COL["pos_count"]] == 0).all() and np.isnan(x[:, COL["sim_pos_mean"]]).all()
    with pytest.raises(ValueError, match="classes must be in"):
        build_pair_features(*_video(rng), np.array([C]), bank)
    with pytest.raises(ValueError, match="segment_embeddings have D"):
        build_pair_features(vp, sp, np.zeros((1, D + 1), np.float32), np.array([0]), bank)
    with pytest.raises(ValueError, match="segment_probs must be"):
        build_pair_features(vp, sp[:, :3], se, np.array([0]), bank)


def test_bank_save_load_round_trip_and_relabel(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    bank = _bank(rng)
    path = bank.save(tmp_path / "bank.npz")
    again = ClassBank.load(path)
    for name in ClassBank.ARRAYS:
        np.testing.assert_array_equal(getattr(again, name), getattr(bank, name))
    # relabel an existing entry: replaced, not duplicated
    i = 0
    rel = bank.add(
        bank.emb[i : i + 1],
        bank.emb_class[i : i + 1],
        1 - bank.emb_label[i : i + 1],
        bank.emb_video[i : i + 1],
        bank.emb_start[i : i + 1],
    )
    assert len(rel) == len(bank)
    assert rel.pos_count.sum() + rel.neg_count.sum() == len(bank)
    delta = 1 if bank.emb_label[i] == 0 else -1
    assert rel.pos_count.sum() == bank.pos_count.sum() + delta
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.npz"):
        ClassBank.load(tmp_path / "bad.npz")
