"""CCRL's GBM on a real 2-worker Dask LocalCluster (``training.ccrl_dask``) against the single-node
fit (``training.ccrl.train_ccrl``) on the same corpus: the same bank, the same pair features (built
on the workers), and a holdout mAP within 0.005.

Row and column subsampling (``subsample``, ``colsample_bytree`` 0.9 by default) draw different rows
on each Dask worker than in one process, and on a tiny corpus that alone moves the holdout mAP of
the single-node model by 0.05 from one seed to the next; the comparison is therefore made without
subsampling, where any difference would be the distributed training's own."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def gbm_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus with ~100 rated validate/ videos (the shared tiny one has 30: a holdout of 3)."""
    from training.synth import run_synth

    out = tmp_path_factory.mktemp("gbm_corpus")
    run_synth(
        out, videos=400, classes=20, seed=11, shards=2, min_frames=30, max_frames=90, progress=False
    )
    return out


def test_dask_gbm_matches_the_single_node_fit(gbm_corpus: Path, index_bundle: Path) -> None:
    from distributed import Client, LocalCluster

    from service.tfrecord import read_videos
    from training.ccrl import (
        CandidateRunner,
        CcrlConfig,
        build_bank,
        rated_pairs,
        split_by_video,
        train_ccrl,
    )
    from training.ccrl_dask import fit_ccrl_on_dask

    graph = index_bundle / "candidate.onnx"  # a real 20-class generator graph
    videos = list(read_videos([gbm_corpus / "validate"]))
    _, holdout = split_by_video(len(videos), 0.1, 0)
    no_sampling = tuple(
        (k, 1.0 if k in ("subsample", "colsample_bytree") else v) for k, v in CcrlConfig().base
    )
    cfg = dataclasses.replace(CcrlConfig(nthread=1), base=no_sampling)
    outs = CandidateRunner(graph, threads=1).run_all(videos, progress=False)
    bank = build_bank(outs, 20)
    pairs = rated_pairs(outs, bank, max_sim=cfg.max_sim, progress=False)
    tokens = [f"{outs[v].id}:{s * 5}" for v, s in zip(pairs.video, pairs.segment, strict=True)]
    single = train_ccrl(pairs, holdout, tokens, cfg, seed=0, progress=False)

    kw: dict[str, Any] = {"seed": 0, "chunk_size": 20}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as lc,
        Client(lc) as client,
    ):
        d_bank, d_pairs, d_tokens, model = fit_ccrl_on_dask(
            client, graph, gbm_corpus / "validate", 20, holdout, [v.id for v in videos], cfg, **kw
        )
    np.testing.assert_array_equal(d_bank.emb, bank.emb)
    np.testing.assert_array_equal(d_bank.pos_sum, bank.pos_sum)
    np.testing.assert_array_equal(d_pairs.x, pairs.x)  # NaN == NaN here: the same features
    assert d_tokens == tokens
    best = max(r["holdout_map"] for r in single.search)
    d_best = max(r["holdout_map"] for r in model.search)
    assert abs(d_best - best) <= 0.005, (single.search, model.search)
    for a, b in zip(
        single.search, model.search, strict=True
    ):  # every grid entry, not only the best
        assert abs(a["holdout_map"] - b["holdout_map"]) <= 0.005, (a, b)
    assert model.booster.num_boosted_rounds() == model.rounds
    hold = holdout[d_pairs.video]
    assert (
        np.isfinite(model.holdout_scores[hold]).all()
        and np.isnan(model.holdout_scores[~hold]).all()
    )
