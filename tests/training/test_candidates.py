"""Candidate generators trained for real on the tiny corpus: outputs, report, checkpoints, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from service.tfrecord import read_videos
from training.candidate_report import (
    MAX_SHARE,
    build_report,
    choose_k,
    format_markdown,
    ratings_from_csr,
)
from training.candidates import (
    CandidateResult,
    model_config,
    model_from_checkpoint,
    score_videos_onnx,
    train_candidates,
    train_model,
    vocabulary_size,
)
from training.data import load_split
from training.export import read_metadata, torch_outputs
from training.metric import Ratings, candidate_recall

TINY = {"lstm": {"hidden": 16, "batch_size": 16}, "logistic": {"batch_size": 16}}


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cand_cache")


@pytest.fixture(scope="module")
def ensemble_run(
    tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory, cache_root: Path
) -> CandidateResult:
    out = tmp_path_factory.mktemp("cand_ensemble")
    return train_candidates(
        tiny_corpus,
        out,
        model="ensemble",
        epochs=3,
        seed=0,
        progress=False,
        threads=1,
        cache_root=cache_root,
        overrides=TINY,
    )


@pytest.mark.slow
def test_ensemble_writes_three_graphs_and_a_report(
    ensemble_run: CandidateResult, tiny_corpus: Path
) -> None:
    res = ensemble_run
    out = res.onnx_path.parent
    assert set(res.onnx_paths) == {"logistic", "lstm", "ensemble"}
    for name, path in res.onnx_paths.items():
        assert path == out / name / "candidate.onnx" and path.is_file()
        meta = read_metadata(path)
        assert meta["model"] == name and meta["num_classes"] == "20"
        assert meta["input_format"] == "float32_dequantized"
    assert res.onnx_path == out / "candidate.onnx"
    assert res.onnx_path.read_bytes() == res.onnx_paths[res.model].read_bytes()
    assert res.num_classes == vocabulary_size(tiny_corpus) == 20
    assert set(res.checkpoints) == {"logistic", "lstm"}

    # Report files: JSON equal to the returned dict, markdown with every generator, a real PNG.
    paths = res.report_paths
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(res.report))
    md = paths["markdown"].read_text()
    for name in ("logistic", "lstm", "ensemble"):
        assert f"| {name} |" in md
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["plot"].stat().st_size > 5000


@pytest.mark.slow
def test_report_numbers_are_sane(ensemble_run: CandidateResult, tiny_corpus: Path) -> None:
    rep = ensemble_run.report
    test_videos = list(read_videos([tiny_corpus / "test"]))
    assert rep["split"] == "test" and rep["num_videos"] == len(test_videos)
    assert rep["total_segments"] == sum(v.num_segments for v in test_videos)
    k = rep["k"]
    assert k == choose_k(len(test_videos)) or k < len(test_videos) * MAX_SHARE + 1
    ratings = Ratings.from_videos(test_videos)
    assert rep["num_classes_evaluated"] == len(ratings.positive_classes())
    for g in rep["generators"].values():
        assert 0.0 <= g["average_recall_at_k"] <= 1.0
        curve = np.array(g["curve"]["average_recall"])
        assert np.all(np.diff(curve) >= -1e-12)  # recall never drops as K grows
        assert curve[-1] == pytest.approx(1.0)  # all videos kept: every positive found
        assert g["reduction_factor"] >= 1.0
        assert g["segments_kept_per_class"] <= rep["total_segments"]
        assert g["train_seconds"] > 0
        per_class = g["per_class_recall_at_k"]
        assert len(per_class) == rep["num_classes_evaluated"]
        assert np.mean(list(per_class.values())) == pytest.approx(g["average_recall_at_k"])
    # The numbers agree with the project's one recall implementation on the graphs' outputs.
    ids, probs, _, _ = score_videos_onnx(ensemble_run.onnx_paths["lstm"], test_videos)
    want = candidate_recall(ids, probs, ratings, [k]).mean[k]
    assert rep["generators"]["lstm"]["average_recall_at_k"] == pytest.approx(want)


@pytest.mark.slow
def test_trained_graphs_match_torch_and_learned_something(
    ensemble_run: CandidateResult, tiny_corpus: Path
) -> None:
    lstm = model_from_checkpoint(ensemble_run.checkpoints["lstm"])
    assert lstm.cfg.hidden == 16 and lstm.cfg.num_classes == 20
    videos = list(read_videos([tiny_corpus / "test"]))[:6]
    _, probs, segs, embs = score_videos_onnx(ensemble_run.onnx_paths["lstm"], videos)
    for i, v in enumerate(videos):
        want = torch_outputs(lstm, v.features())
        np.testing.assert_allclose(probs[i], want[0], atol=1e-4)
        np.testing.assert_allclose(segs[i], want[1], atol=1e-4)
        np.testing.assert_allclose(embs[i], want[2], atol=1e-4)
        assert segs[i].shape == (v.num_frames // 5, 20)
    # Training lowered the held-out loss below the first epoch's.
    ckpt = torch.load(ensemble_run.checkpoints["logistic"], weights_only=True)
    hist = ckpt["history"]
    assert min(h["val_loss"] for h in hist) <= hist[0]["val_loss"]
    assert ckpt["config"]["num_classes"] == 20  # the checkpoint carries its own config


@pytest.mark.slow
def test_lstm_is_a_residual_on_the_logistic_member(
    ensemble_run: CandidateResult, tiny_corpus: Path
) -> None:
    """The small LSTM's logistic path is the trained logistic member, frozen; the start (epoch 0)
    is that model calibrated per class, which keeps its ranking (same validation mAP); the kept
    epoch is the best validation mAP, the start included, so it is never below the start."""
    ckpt = torch.load(ensemble_run.checkpoints["lstm"], weights_only=True)
    lstm = model_from_checkpoint(ensemble_run.checkpoints["lstm"])
    logistic = model_from_checkpoint(ensemble_run.checkpoints["logistic"])
    assert lstm.cfg.linear and lstm.cfg.warm_start and lstm.cfg.calibrate
    assert lstm.cfg.select == "map"
    assert torch.equal(lstm.linear.weight, logistic.head.weight)
    assert torch.equal(lstm.lin_norm.inv_std, logistic.norm.inv_std)
    log_ckpt = torch.load(ensemble_run.checkpoints["logistic"], weights_only=True)
    log_best = log_ckpt["history"][log_ckpt["best_epoch"] - 1]
    assert ckpt["start"]["val_map"] == pytest.approx(log_best["val_map"], abs=1e-5)
    assert ckpt["start"]["val_loss"] != pytest.approx(log_best["val_loss"])  # calibrated
    maps = [ckpt["start"]["val_map"]] + [h["val_map"] for h in ckpt["history"]]
    assert ckpt["best_epoch"] == int(np.argmax(maps))  # first best: ties keep the earlier epoch
    assert ckpt["best_val"] == pytest.approx(-max(maps))
    if ckpt["best_epoch"] == 0:  # nothing beat the start: a per-class rescaled logistic model
        v = next(iter(read_videos([tiny_corpus / "test"])))
        want = torch.logit(torch.from_numpy(torch_outputs(logistic, v.features())[0]))
        got = torch.logit(torch.from_numpy(torch_outputs(lstm, v.features())[0]))
        affine = want * lstm.linear_scale.detach() + lstm.head.bias.detach()
        np.testing.assert_allclose(got.numpy(), affine.numpy(), atol=1e-3)
    # training moved the recurrent branch away from its zero start
    last = ckpt["state"]
    assert float(last["head.weight"].abs().max()) > 0


@pytest.mark.slow
def test_resume_continues_where_it_stopped(
    tiny_corpus: Path, tmp_path: Path, cache_root: Path
) -> None:
    cache = load_split(tiny_corpus / "train", cache_root=cache_root)
    # a constant learning rate: a one-cycle schedule is laid over the run's total epochs, so
    # 1 epoch then 1 more is, by design, not 2 epochs in one go
    ov = {**TINY["lstm"], "schedule": "constant"}
    one = train_model(
        model_config("lstm", "small", 20, epochs=1, overrides=ov), cache, tmp_path / "a",
        progress=False,
    )  # fmt: skip
    assert len(one.history) == 1
    two = train_model(
        model_config("lstm", "small", 20, epochs=2, overrides=ov), cache, tmp_path / "a",
        resume=True, progress=False,
    )  # fmt: skip
    assert [h["epoch"] for h in two.history] == [1, 2]
    assert two.history[0] == one.history[0]  # the first epoch was not redone
    # The same two epochs in one go give the same weights: resume is exact.
    straight = train_model(
        model_config("lstm", "small", 20, epochs=2, overrides=ov), cache, tmp_path / "b",
        progress=False,
    )  # fmt: skip
    assert straight.history[1]["val_loss"] == pytest.approx(two.history[1]["val_loss"], abs=1e-5)
    # A finished run resumes to itself; a different architecture refuses to resume.
    again = train_model(
        model_config("lstm", "small", 20, epochs=2, overrides=ov), cache, tmp_path / "a",
        resume=True, progress=False,
    )  # fmt: skip
    assert again.history == two.history
    with pytest.raises(ValueError, match="hidden"):
        train_model(
            model_config("lstm", "small", 20, epochs=3, overrides={"hidden": 8}), cache,
            tmp_path / "a", resume=True, progress=False,
        )  # fmt: skip


@pytest.mark.slow
def test_cli_train_candidates_prints_the_table(tiny_corpus: Path, tmp_path: Path) -> None:
    from ccrl.cli import app

    data = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, data)  # the CLI caches next to the data: keep the fixture clean
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["train-candidates", str(data), "--out", str(out), "--model", "logistic", "--epochs", "2"],
    )
    assert result.exit_code == 0, result.output
    assert "Recall@K" in result.output and "logistic" in result.output
    assert (out / "candidate.onnx").is_file()
    assert (out / "report" / "candidates.md").is_file()
    assert (out / "checkpoints" / "logistic" / "last.pt").is_file()
    assert any(p.name.startswith("train-") for p in (data / ".cache").iterdir())


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train/"):
        train_candidates(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        train_candidates(tmp_path, tmp_path / "out", model="svm", progress=False)
    with pytest.raises(ValueError, match="unknown preset"):
        model_config("lstm", "huge", 10)
    with pytest.raises(ValueError, match="cannot override"):
        model_config("lstm", "small", 10, overrides={"num_classes": 3})
    bad = tmp_path / "vocab"
    bad.mkdir()
    (bad / "vocabulary.csv").write_text("Index,Name\n0,a\nx,b\n")
    with pytest.raises(ValueError, match=r"vocabulary\.csv:3"):
        vocabulary_size(bad)


def test_report_on_a_hand_made_case(tmp_path: Path) -> None:
    """40 videos, 2 classes: K = 2; a perfect and a reversed ranking give recall 1 and 0."""
    ids = [f"v{i}" for i in range(40)]
    seg_offsets = np.arange(41, dtype=np.int64)  # one rating per video
    labels = np.array([0] * 20 + [1] * 20, dtype=np.int64)
    starts = np.zeros(40, dtype=np.int64)
    scores = np.zeros(40, dtype=np.float32)
    scores[[0, 1, 20]] = 1.0  # class 0: positives in v0, v1; class 1: in v20
    ratings = ratings_from_csr(ids, seg_offsets, labels, starts, scores)
    good = np.zeros((40, 2), np.float32)
    good[[0, 1], 0] = 1.0
    good[20, 1] = 1.0
    bad = 1.0 - good
    rep = build_report(
        {"good": good, "bad": bad}, ids, np.full(40, 4, np.int64), ratings, split="x"
    )
    assert rep["k"] == 2 and rep["total_segments"] == 160
    assert rep["generators"]["good"]["average_recall_at_k"] == 1.0
    assert rep["generators"]["bad"]["average_recall_at_k"] == 0.0
    assert rep["generators"]["good"]["reduction_factor"] == pytest.approx(20.0)
    assert rep["generators"]["good"]["per_class_recall_at_k"] == {"0": 1.0, "1": 1.0}
    assert rep["generators"]["good"]["k_at_target"] == 2  # K = 1 misses v1 of class 0
    assert rep["generators"]["bad"]["k_at_target"] == 40
    md = format_markdown(rep)
    assert "K = 2" in md and "| good | 1.0000" in md
    with pytest.raises(ValueError, match="shapes"):
        build_report({"a": good, "b": good[:, :1]}, ids, np.full(40, 4, np.int64), ratings)
