"""CCRL training pieces on the tiny corpus with a real (untrained) candidate LSTM exported to ONNX:
leakage-free training pairs, the GBM protocol, baselines with their ONNX graphs, CG ranking."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from service.bank import ClassBank
from service.features import FEATURE_NAMES
from service.tfrecord import read_videos
from service.yt8m import Video
from training import baselines as bl
from training.candidates import LstmModel, model_config
from training.ccrl import (
    CandidateRunner,
    CcrlConfig,
    VideoOutputs,
    build_bank,
    in_range_ratings,
    pairs_map,
    rated_pairs,
    split_by_video,
    train_ccrl,
)
from training.export import export_onnx
from training.submit import CorpusScores, cg_k, combine

FAST = CcrlConfig(
    max_rounds=20,
    early_stopping=5,
    nthread=1,
    grid=({"max_depth": 3, "eta": 0.3, "min_child_weight": 1.0},),
)


@pytest.fixture(scope="module")
def lstm() -> LstmModel:
    """A real candidate LSTM (16 cells, untrained: the features are real, just uninformed)."""
    torch.manual_seed(0)
    cfg = replace(model_config("lstm", "small", 20), hidden=16)
    return LstmModel(cfg).eval()


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory, lstm: LstmModel) -> Path:
    return export_onnx(lstm, tmp_path_factory.mktemp("cand") / "candidate.onnx")


@pytest.fixture(scope="module")
def val_videos(tiny_corpus: Path) -> list[Video]:
    return list(read_videos([tiny_corpus / "validate"]))


@pytest.fixture(scope="module")
def outputs(candidate: Path, val_videos: list[Video]) -> list[VideoOutputs]:
    return CandidateRunner(candidate, threads=1).run_all(val_videos, progress=False)


def _tokens(outputs: list[VideoOutputs], pairs: object) -> list[str]:
    return [
        f"{outputs[v].id}:{s * 5}"
        for v, s in zip(pairs.video.tolist(), pairs.segment.tolist(), strict=True)  # type: ignore[attr-defined]
    ]


def test_in_range_ratings_drop_and_dedupe() -> None:
    q = np.zeros((23, 1024), np.uint8)
    v = Video(
        "v",
        q,
        np.zeros((23, 128), np.uint8),
        segment_labels=np.array([3, 3, 4, 5]),
        segment_starts=np.array([5, 5, 10, 20]),  # 20 is past the last whole segment (S = 4)
        segment_scores=np.array([0.0, 1.0, 0.0, 1.0], np.float32),
    )
    cls, seg, lab, dropped = in_range_ratings(v)
    assert dropped == 1
    assert sorted(zip(cls.tolist(), seg.tolist(), lab.tolist(), strict=True)) == [
        (3, 1, 1.0),  # the repeated rating keeps the positive
        (4, 2, 0.0),
    ]


def test_bank_holds_every_in_range_rating(outputs: list[VideoOutputs]) -> None:
    bank = build_bank(outputs, 20)
    n = sum(len(o.rated_class) for o in outputs)
    assert len(bank) == n > 0
    assert int(bank.pos_count.sum()) == int(sum(o.rated_label.sum() for o in outputs))
    np.testing.assert_allclose(np.linalg.norm(bank.emb, axis=1), 1.0, atol=1e-5)


def test_training_pairs_never_use_their_own_videos_labels(outputs: list[VideoOutputs]) -> None:
    """The pipeline's leakage test: rewrite one video's labels in the bank (flip all of them, or
    drop them) and that video's training rows stay the same; other videos' rows do change."""
    bank = build_bank(outputs, 20)
    base = rated_pairs(outputs, bank, progress=False)
    target = next(i for i, o in enumerate(outputs) if len(o.rated_class) >= 2)
    vid = outputs[target].id
    ix = bank.video_entries(vid)
    labels = bank.emb_label.copy()
    labels[ix] = 1 - labels[ix]
    flipped = ClassBank.from_entries(
        bank.emb, bank.emb_class, labels, bank.emb_video, bank.emb_start, num_classes=20
    )
    for other_bank in (flipped, bank.without_video(vid)):
        got = rated_pairs(outputs, other_bank, progress=False)
        mine = base.video == target
        np.testing.assert_allclose(got.x[mine], base.x[mine], rtol=1e-5, atol=1e-5, equal_nan=True)
        np.testing.assert_array_equal(got.y, base.y)
        # rows of videos sharing a class with the target see the change: the test has teeth
        shared = np.isin(base.class_ids, outputs[target].rated_class) & ~mine
        assert shared.any()
        assert not np.allclose(got.x[shared], base.x[shared], equal_nan=True)
    # a pair's own label never appears as a feature: labels flipped, counts on the row unchanged
    col = FEATURE_NAMES.index("pos_count")
    row = np.flatnonzero(base.video == target)[0]
    c = base.class_ids[row]
    others = (bank.emb_class == c) & (bank.emb_label == 1) & (bank.emb_video != vid)
    assert base.x[row, col] == others.sum()


def test_gbm_protocol_and_holdout_scores(outputs: list[VideoOutputs]) -> None:
    bank = build_bank(outputs, 20)
    pairs = rated_pairs(outputs, bank, progress=False)
    _, hold = split_by_video(len(outputs), 0.1, seed=0)
    model = train_ccrl(pairs, hold, _tokens(outputs, pairs), FAST, progress=False)
    in_hold = hold[pairs.video]
    assert np.isfinite(model.holdout_scores[in_hold]).all()
    assert np.isnan(model.holdout_scores[~in_hold]).all()
    assert 1 <= model.rounds <= FAST.max_rounds
    assert model.booster.num_features() == len(FEATURE_NAMES)
    assert model.booster.feature_types[0] == "c"
    assert model.search[0]["best_rounds"] == model.rounds
    assert 0.0 <= model.search[0]["holdout_map"] <= 1.0
    with pytest.raises(ValueError, match="holdout"):
        train_ccrl(pairs, np.zeros(len(outputs), bool), _tokens(outputs, pairs), FAST)


def test_pairs_map_uses_the_metric() -> None:
    toks = ["a:0", "b:0", "c:0", "a:5"]
    # class 1: positives a:0 and c:0, ranked 1st and 3rd -> AP = (1 + 2/3) / 2
    m = pairs_map([0.9, 0.5, 0.4, 0.1], [1, 1, 1, 2], toks, [1, 0, 1, 1])
    assert m == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)


def test_baselines_finetune_export_and_masked_loss(
    tmp_path: Path, lstm: LstmModel, val_videos: list[Video]
) -> None:
    segs = bl.segment_set(val_videos, 20)
    assert segs.frames.shape[1:] == (5, 1152) and segs.mask.any(axis=1).all()
    # the loss only covers rated entries: unrated targets do not matter
    logits = torch.randn(4, 20)
    target = torch.zeros(4, 20)
    mask = torch.zeros(4, 20)
    mask[:, 3] = 1
    other = target.clone()
    other[:, 5] = 1
    assert float(bl.masked_bce(logits, target, mask)) == float(bl.masked_bce(logits, other, mask))
    _, hold = split_by_video(len(val_videos), 0.2, seed=1)
    cfg = bl.FinetuneConfig(max_epochs=2, patience=1)
    for init in (bl.baseline_from_candidate(lstm), bl.convnet_like(lstm, proj=16, hidden=16)):
        res = bl.finetune(init, segs, hold, cfg, progress=False, name=init.kind)
        rows = segs.rows(hold)
        assert np.isfinite(res.holdout_probs[rows]).all()
        assert 0 <= res.epochs <= 2 and len(res.history) >= 1
        path = bl.export_baseline(res.model, tmp_path / f"baseline_{init.kind}.onnx")
        runner = bl.BaselineRunner(path)
        v = val_videos[0]
        got = runner(v.features())
        assert got.shape == (v.num_segments, 20)
        with torch.no_grad():
            want = res.model.graph(torch.from_numpy(v.features())).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)
    # the LSTM baseline starts from the candidate's weights
    seg_lstm = bl.baseline_from_candidate(lstm)
    for a, b in zip(seg_lstm.net.parameters(), lstm.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cg_lists_hold_only_top_k_videos() -> None:
    assert cg_k(300) == 15 and cg_k(19) == 1 and cg_k(40) == 2
    # 4 videos x 2 segments, 2 classes; K = 2
    vp = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.7], [0.2, 0.9]], np.float32)
    mask = np.zeros_like(vp, bool)
    top = np.argsort(-vp, axis=0, kind="stable")[:2]
    mask[top, np.arange(2)[None, :]] = True
    seg_video = np.repeat(np.arange(4), 2)
    scores = np.arange(16, dtype=np.float32).reshape(8, 2)
    cs = CorpusScores(
        ["a", "b", "c", "d"],
        np.array([3, 7]),
        seg_video,
        np.tile([0, 5], 4),
        vp,
        mask,
        2,
        {"m": scores, "n": -scores},
        {"members": ["m", "n"], "method": "rank"},
    )
    with_cg = cs.ranked("m", cg=True)
    assert with_cg[3] == ["b:5", "b:0", "a:5", "a:0"]
    assert with_cg[7] == ["d:5", "d:0", "c:5", "c:0"]
    without = cs.ranked("m", cg=False)
    assert len(without[3]) == 8 and without[3][0] == "d:5"
    assert cs.ranked("m", cg=False, top=3)[3] == ["d:5", "d:0", "c:5"]
    assert "ensemble" in cs.models
    assert len(cs.ranked("ensemble", cg=True)[3]) == 4


def test_combine_mean_and_rank() -> None:
    parts = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.4]], np.float32)
    np.testing.assert_allclose(combine(parts, "mean"), [0.55, 0.2, 0.45])
    np.testing.assert_allclose(combine(parts, "rank"), [0.5, 0.25, 0.75])
    np.testing.assert_allclose(combine(parts, "mean", [0.75, 0.25]), [0.725, 0.15, 0.475])
    with pytest.raises(ValueError, match="summing to 1"):
        combine(parts, "mean", [0.5, 0.6])
    with pytest.raises(ValueError, match="unknown ensemble method"):
        combine(parts, "max")
