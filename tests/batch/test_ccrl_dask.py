"""CCRL's stage 3 on a real 2-worker Dask LocalCluster (``training.ccrl_dask``) against one process
(``training.stages.ccrl_select``) on the same corpus: the same choices (generator and embedding,
objective, parameters, rounds), the same record (the candidates' holdout mAPs, the tried rows), the
same features (built on the workers), and cross-fitted holdout mAPs within 0.01.

Exact parity of the boosters is not promised: distributed ``hist`` merges per-worker quantile
sketches, and ``subsample`` / ``colsample_bytree`` (0.9 by default) draw other rows on each worker
than in one process (on a tiny corpus that alone moves a holdout mAP by several hundredths from one
seed to the next). The comparison is therefore made without subsampling, where any difference is
the distributed training's own. The grid is cut to two entries and two objectives (one of each
family) and 60 rounds to keep the test short; the rules are the full run's.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.slow]


def _small_config() -> Any:
    from training.ccrl import CcrlConfig

    cfg = CcrlConfig(nthread=1)
    no_sampling = tuple(
        (k, 1.0 if k in ("subsample", "colsample_bytree") else v) for k, v in cfg.base
    )
    return dataclasses.replace(
        cfg,
        base=no_sampling,
        grid=(cfg.grid[0], cfg.grid[3]),
        objectives=("binary:logistic", "rank:pairwise"),
        max_rounds=60,
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as lc,
        Client(lc) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def stage_inputs(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The run, the generators (logistic, lstm, ensemble; 1 epoch) and validate/ of the tiny
    corpus, as ``run_train`` has them before stage 3."""
    from training.stages.generators import train_generators
    from training.stages.run import start_run
    from training.stages.validate import read_validate

    run = start_run(
        tiny_corpus,
        tmp_path_factory.mktemp("dask-stage") / "tiny",
        threads=1,
        preset="small",
        seed=0,
        candidate_model="ensemble",
        candidate_epochs=1,
        convnet_pretrain_epochs=1,
        progress=False,
        keep_work=False,
        finetune=None,
    )
    run.ccrl = _small_config()
    gens = train_generators(run, None)
    return run, gens, read_validate(run)


def test_class_parts_cut_only_between_classes() -> None:
    from training.ccrl_dask import class_parts

    cls = np.repeat(np.arange(4), [2, 5, 3, 2])  # 12 rows, classes start at 0, 2, 7, 10
    parts = class_parts(cls, 2)
    assert parts[0][0] == 0 and parts[-1][1] == 12
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(parts))
    for a, _ in parts:  # no class on both sides of a cut
        assert a == 0 or cls[a] != cls[a - 1]
    assert parts == [(0, 7), (7, 12)]  # the class boundary nearest 6 rows
    assert class_parts(np.zeros(4, np.int64), 3) == [(0, 4)]  # one class: one part


def test_dask_fitter_trains_the_local_boosters(cluster: Any) -> None:
    """Without subsampling, the folds of one setting trained with ``xgboost.dask`` on 2 workers
    (a ranking objective with the class as ``qid``, groups whole on a worker) score the held-out
    pairs as in one process (a few hundred rows: the merged sketches find the same cuts)."""
    from tests.training.test_objectives import _pairs
    from training.ccrl import PairSet
    from training.ccrl_dask import DaskFitter
    from training.crossfit import oof_curve, video_folds
    from training.objectives import objective_params

    x, y, cls, vid, tok = _pairs(40)
    fitter = DaskFitter(cluster, PairSet(x, y, vid, cls, np.zeros(len(y), np.int64)))
    assert len(fitter.ranges) == 2
    fold = video_folds(40, 5, 0)[vid]
    base = dict(_small_config().params(_small_config().grid[0], 0))
    for objective in ("binary:logistic", "rank:pairwise"):
        params = objective_params(base, objective)
        local = oof_curve(x, y, cls, list(tok), fold, params, 30)
        dask = oof_curve(x, y, cls, list(tok), fold, params, 30, fitter=fitter)
        np.testing.assert_allclose(dask.scores, local.scores, atol=1e-5)
        assert dask.maps == pytest.approx(local.maps, abs=1e-6)


def test_dask_fitter_is_reproducible_across_clusters(cluster: Any) -> None:
    """With the default row and column subsampling, a second 2-worker cluster trains the same
    boosters (part i on the worker of xgboost rank i: the same rows meet the same draws)."""
    from distributed import Client, LocalCluster

    from tests.training.test_objectives import _pairs
    from training.ccrl import CcrlConfig, PairSet
    from training.ccrl_dask import DaskFitter
    from training.crossfit import dmatrix
    from training.objectives import objective_params

    x, y, cls, vid, _ = _pairs(30)
    pairs = PairSet(x, y, vid, cls, np.zeros(len(y), np.int64))
    cfg = CcrlConfig(nthread=1)  # subsample and colsample_bytree 0.9
    rows = np.flatnonzero(vid % 5 != 0)

    def predictions(client: Any) -> np.ndarray:
        fitter = DaskFitter(client, pairs)
        d, _ = dmatrix(x)
        return np.concatenate(
            [
                fitter(rows, objective_params(cfg.params(cfg.grid[0], 0), o), 20).predict(d)
                for o in ("binary:logistic", "rank:pairwise")
            ]
        )

    first = predictions(cluster)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as lc,
        Client(lc) as other,
    ):
        second = predictions(other)
    np.testing.assert_array_equal(first, second)


def test_dask_fitter_retries_a_failed_collective(
    cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket failure of the workers' collective is retried (the same booster), up to
    ``TRAIN_ATTEMPTS`` times; the last failure is raised."""
    import xgboost as xgb
    from xgboost import dask as dxgb

    from tests.training.test_objectives import _pairs
    from training.ccrl import PairSet
    from training.ccrl_dask import TRAIN_ATTEMPTS, DaskFitter
    from training.crossfit import dmatrix
    from training.objectives import objective_params

    x, y, cls, vid, _ = _pairs(10)
    fitter = DaskFitter(cluster, PairSet(x, y, vid, cls, np.zeros(len(y), np.int64)))
    params = objective_params(_small_config().params(_small_config().grid[0], 0), "rank:pairwise")
    rows = np.arange(len(y), dtype=np.int64)
    ref = fitter(rows, params, 5)
    real, calls = dxgb.train, []

    def flaky(*a: Any, fail: int, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) <= fail:
            raise xgb.core.XGBoostError("[comm.cc:409]: Failed to shutdown. recv Interrupted")
        return real(*a, **kw)

    monkeypatch.setattr(dxgb, "train", lambda *a, **kw: flaky(*a, fail=TRAIN_ATTEMPTS - 1, **kw))
    again = fitter(rows, params, 5)
    assert len(calls) == TRAIN_ATTEMPTS
    d, _ = dmatrix(x)
    np.testing.assert_array_equal(again.predict(d), ref.predict(d))
    calls.clear()
    monkeypatch.setattr(dxgb, "train", lambda *a, **kw: flaky(*a, fail=TRAIN_ATTEMPTS, **kw))
    with pytest.raises(xgb.core.XGBoostError):
        fitter(rows, params, 5)
    assert len(calls) == TRAIN_ATTEMPTS


def test_dask_stage_makes_the_one_process_choices(stage_inputs: Any, cluster: Any) -> None:
    from training.pipeline import fit_ccrl_stage

    run, gens, val = stage_inputs
    one, one_maps = fit_ccrl_stage(run, gens, val, None, None)
    addr = cluster.scheduler.address
    dsk, dsk_maps = fit_ccrl_stage(run, gens, val, None, addr)  # `ccrl train --scheduler ADDR`

    # the candidates and their cross-fitted holdout mAPs (manifest: generators_holdout_map)
    assert (
        sorted(dsk_maps)
        == sorted(one_maps)
        == sorted(
            f"{g}/{e}"
            for g in gens.graphs
            for e in (("frames",) if g == "logistic" else ("hidden", "frames"))
        )
    )
    for k in one_maps:
        assert abs(dsk_maps[k] - one_maps[k]) <= 0.01, (k, one_maps, dsk_maps)
    # the choices (manifest: candidate_model, embedding, ccrl_objective, gbm_selection)
    assert (dsk.generator, dsk.embedding) == (one.generator, one.embedding)
    assert dsk.graph.name == one.graph.name
    assert one.gbm is not None and dsk.gbm is not None
    assert (dsk.gbm.objective, dsk.gbm.rounds) == (one.gbm.objective, one.gbm.rounds)
    assert dsk.gbm.params == one.gbm.params
    assert abs(dsk.gbm.oof_map - one.gbm.oof_map) <= 0.01
    d_info, o_info = dsk.gbm.info(), one.gbm.info()
    assert sorted(d_info) == sorted(o_info)
    drop = ("oof_map", "rounds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in d_info["tried"]] == [
        {k: v for k, v in r.items() if k not in drop} for r in o_info["tried"]
    ]
    for a, b in zip(d_info["tried"], o_info["tried"], strict=True):
        assert abs(a["oof_map"] - b["oof_map"]) <= 0.01, (a, b)
    assert (d_info["runner_up"] is None) == (o_info["runner_up"] is None)
    assert sorted(dsk.model.info()) == sorted(one.model.info())
    assert dsk.model.booster.num_boosted_rounds() == dsk.model.rounds == one.model.rounds
    # the same features, built on the workers, and a cross-fitted score for every pair
    np.testing.assert_array_equal(dsk.bank.emb, one.bank.emb)
    np.testing.assert_array_equal(dsk.bank.pos_sum, one.bank.pos_sum)
    np.testing.assert_array_equal(dsk.pairs.x, one.pairs.x)  # NaN == NaN here
    np.testing.assert_array_equal(dsk.pairs.video, one.pairs.video)
    assert dsk.tokens == one.tokens
    assert dsk.outputs is not None and one.outputs is not None
    assert [o.id for o in dsk.outputs] == [o.id for o in one.outputs]
    for a, b in zip(dsk.outputs, one.outputs, strict=True):
        np.testing.assert_allclose(a.segment_embeddings, b.segment_embeddings, atol=1e-6)
    assert np.isfinite(dsk.model.holdout_scores).all()
    assert len(dsk.model.holdout_scores) == len(one.model.holdout_scores)
