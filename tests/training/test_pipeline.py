"""End to end on the tiny corpus: `run_train` writes a verified bundle with its report; `submit`
writes valid Kaggle files for every model with and without CG that the metric scores; the offline
scores equal the service's for the same video (train/serve parity)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from service.bundle import load_bundle
from service.features import build_pair_features
from service.tfrecord import read_videos
from training.metric import Ratings, mean_average_precision
from training.pipeline import run_train
from training.stages.bundle import read_rated_classes
from training.submission import read_submission
from training.submit import bundle_cg_share, cg_k, run_submit, score_corpus

pytestmark = pytest.mark.slow

MODELS = ("ccrl", "lstm", "convnet", "ensemble")


@pytest.fixture(scope="module")
def bundle(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny"
    run_train(
        tiny_corpus,
        out,
        preset="small",
        seed=0,
        candidate_epochs=1,
        convnet_pretrain_epochs=1,
        progress=False,
    )
    return out


def test_bundle_layout_manifest_and_report(bundle: Path, tiny_corpus: Path) -> None:
    b = load_bundle(bundle)  # verifies the sha256 of every file, report included
    m = json.loads((bundle / "manifest.json").read_text())
    for rel in (
        "candidate.onnx",
        "ccrl.ubj",
        "bank.npz",
        "baseline_lstm.onnx",
        "baseline_convnet.onnx",
        "report/report.md",
        "report/report.json",
        "report/table2_map.png",
        "report/per_cluster_ap.png",
        "report/rare_frequent.png",
        "report/active_learning.png",
    ):
        assert rel in m["files"], rel
    assert set(b.baseline_paths) == {"lstm", "convnet"}
    assert b.rated_classes.tolist() == read_rated_classes(tiny_corpus, np.zeros(0))
    assert {"numpy", "xgboost", "onnxruntime", "torch"} <= set(m["versions"])
    assert m["classes"][0]["name"] and m["ccrl"]["categorical"] == ["class_id"]
    assert m["config"]["ensemble"]["method"] in ("mean", "rank")
    with np.load(bundle / "bank.npz", allow_pickle=False) as z:
        assert z["emb"].shape[0] == len(b.bank) > 0
    table2 = m["metrics"]["map"]
    alt = m["config"]["ccrl_alternative"]
    assert set(table2) == {*MODELS, f"ccrl[{alt['objective']}]"}
    assert (bundle / alt["file"]).is_file() and alt["file"] in m["files"]
    objective = m["config"]["ccrl_objective"]
    assert objective == m["ccrl"]["params"]["objective"]
    assert objective.startswith("rank:") != alt["objective"].startswith("rank:")
    for scores in table2.values():
        assert 0.0 <= scores["cg"] <= 1.0 and 0.0 <= scores["no_cg"] <= 1.0
    assert m["metrics"]["train_seconds"]["total"] > 0
    md = (bundle / "report" / "report.md").read_text()
    assert "Table 2 analogue" in md and "Rare vs frequent" in md and "Active learning" in md
    rep = json.loads((bundle / "report" / "report.json").read_text())
    assert rep["table1"]["k"] == cg_k(rep["videos"], bundle_cg_share(b))
    cg = m["config"]["cg"]
    assert cg["video_share"] in [r["video_share"] for r in m["config"]["training"]["cg_curve"]]
    assert "report/cg_holdout.png" in m["files"] and "Chosen on the validate holdout" in md
    assert set(m["config"]["service"]) == {"max_classes", "min_video_score"}
    assert rep["groups"]["kind"] == "cluster"


def test_submit_every_model_with_and_without_cg(
    bundle: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    test = [tiny_corpus / "test"]
    videos = list(read_videos(test))
    ratings = Ratings(videos)
    metrics = json.loads((bundle / "manifest.json").read_text())["metrics"]["map"]
    rated = set(load_bundle(bundle).rated_classes.tolist())
    k = cg_k(len(videos), bundle_cg_share(load_bundle(bundle)))
    for model in MODELS:
        for cg in (True, False):
            path = run_submit(bundle, test, tmp_path / f"{model}-{cg}.csv", model=model, cg=cg)
            assert path.read_text().splitlines()[0] == "Class,Segments"
            sub = read_submission(path)
            assert set(sub) == rated
            for tokens in sub.values():
                videos_in = {t.rpartition(":")[0] for t in tokens}
                assert len(videos_in) <= (k if cg else len(videos))
                assert len(tokens) == len(set(tokens))
            got = mean_average_precision(sub, ratings)
            assert got == pytest.approx(metrics[model]["cg" if cg else "no_cg"], abs=1e-9)
    with pytest.raises(ValueError, match="unknown model"):
        run_submit(bundle, test, tmp_path / "x.csv", model="transformer")


def test_cli_submit_and_evaluate(bundle: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    from ccrl.cli import app

    runner = CliRunner()
    out = tmp_path / "sub.csv"
    res = runner.invoke(
        app,
        [
            "submit",
            str(bundle),
            "--data",
            str(tiny_corpus / "test"),
            "--out",
            str(out),
            "--top",
            "7",
        ],
    )
    assert res.exit_code == 0, res.output
    assert max(len(v) for v in read_submission(out).values()) <= 7
    rep = tmp_path / "rep"
    res = runner.invoke(
        app, ["evaluate", str(bundle), "--data", str(tiny_corpus / "test"), "--out", str(rep)]
    )
    assert res.exit_code == 0, res.output
    assert "ccrl" in res.output and (rep / "report.md").is_file()
    load_bundle(bundle)  # a report written elsewhere leaves the bundle intact


def test_train_serve_parity(bundle: Path, tiny_corpus: Path) -> None:
    """Features and scores of the offline path equal the service's for the same videos."""
    from service.scorer import Scorer
    from training.ccrl import CandidateRunner

    b = load_bundle(bundle, nthread=1)
    scorer = Scorer(b, intra_threads=1, xgb_nthread=1, providers="cpu")
    runner = CandidateRunner(b.candidate_path, threads=1)
    videos = list(read_videos([tiny_corpus / "test"]))[:4]
    cls = b.rated_classes
    cs = score_corpus(b, videos, models=["ccrl"], cg_modes=(False,), threads=1, progress=False)
    for i, v in enumerate(videos):
        offline = runner(v)
        online = scorer.run_candidate(v.features())
        x_off = build_pair_features(
            offline.video_probs,
            offline.segment_probs,
            offline.segment_embeddings,
            cls,
            b.bank,
            v.id,
            max_sim=b.max_sim,
        ).x
        x_on = build_pair_features(
            online.video_probs,
            online.segment_probs,
            online.segment_embeddings,
            cls,
            b.bank,
            v.id,
            max_sim=b.max_sim,
        ).x
        np.testing.assert_array_equal(x_off, x_on)
        served = scorer.localize(v.features(), b.bank, video_id=v.id, classes=cls.tolist())
        rows = cs.seg_video == i
        np.testing.assert_array_equal(cs.scores["ccrl"][rows].T, served.scores)
