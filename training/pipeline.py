"""``ccrl train DATA --out models/NAME``: the whole pipeline, one function per stage, with timings.

:func:`run_train` calls the stages in order, each under a timer whose name is a key of the
manifest's ``metrics.train_seconds``. Every stage reads the :class:`~training.stages.run.TrainRun`
(the arguments, the folders, the timer) and the results of the stages before it, and returns its
own small result. One module per stage, under ``training/stages/``:

1. ``generators``: the video-level candidate generators (logistic and LSTM, and their average) on
   ``train/`` video labels (``training.candidates``), exported to ONNX with their Recall@K report
   (or reused from a ``ccrl train-candidates`` folder);
2. ``validate``: the rated ``validate/`` videos and their 90/10 split by video (the 10% holdout
   drives every early stop and every choice below);
3. ``ccrl_select``, for every generator (logistic, lstm, their ensemble): its outputs on
   ``validate/`` (ONNX Runtime, the graph the service runs), and for each segment embedding (its
   own, and mean frames) the bank of the labelled segments and the leakage-free features of the
   rated pairs, scored by the cross-fitted holdout mAP of a standard GBM; the best is kept (the
   LSTM's when within 0.005), and its GBM's objective, parameters and rounds are chosen on
   cross-fitted holdout scores too, then refit on all pairs; with ``workers`` or ``scheduler``,
   the same choices by the same code, with the features built and every booster trained on Dask
   (``training.ccrl_dask``, ``xgboost.dask``);
3b. ``cg_choice``: candidate generation (the share of the videos each class keeps) and the
   service's candidate classes per video, chosen on the holdout scores;
4. ``baselines``: the LSTM segment classifier (from the candidate LSTM) and the ConvNet
   (pre-trained on ``train/``), fine-tuned on the same rated segments with the same split,
   exported to ONNX;
5. ``ensemble``: a weighted mean of probabilities or of ranks of CCRL and the baselines (method
   and CCRL weight chosen on the holdout; the baselines share the rest equally), or the best
   single member when no combination beats it on the holdout;
5b. ``online_classes``: new classes from online labels, measured on ``test/``;
6. ``bundle``: the manifest's config and the bundle (``training.bundle_writer``);
7. ``evaluate``: the evaluation on ``test/`` (``training.report``) written into ``BUNDLE/report/``
   and the manifest's metrics (sha256 recomputed after the report), the work folder removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.stages.baselines import fit_convnet_baseline, fit_lstm_baseline
from training.stages.bundle import train_config, write_train_bundle
from training.stages.ccrl_fit import CcrlFit
from training.stages.ccrl_select import (
    FeatureSet,
    choose_features,
    fit_chosen,
    generator_features,
)
from training.stages.cg_choice import choose_cg_and_service
from training.stages.ensemble import choose_ensemble
from training.stages.evaluate import evaluate_bundle, finish
from training.stages.generators import Generators, train_generators
from training.stages.online_classes import measure_online_classes
from training.stages.run import TrainRun, start_run
from training.stages.validate import Validate, read_validate

if TYPE_CHECKING:
    from training.baselines import FinetuneConfig
    from training.candidates import CandidateResult


def run_train(
    data: Path,
    out: Path,
    *,
    preset: str = "small",
    seed: int = 0,
    threads: int | None = None,
    candidate_model: str = "ensemble",
    candidate_epochs: int | None = None,
    convnet_pretrain_epochs: int = 6,
    progress: bool = True,
    keep_work: bool = False,
    candidates: Path | CandidateResult | None = None,
    finetune: FinetuneConfig | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> Path:
    """Train everything and write the bundle ``out``; returns the manifest path.

    Args:
        data: corpus folder with ``train/``, ``validate/`` (rated) and ``test/`` (rated, optional).
        out: the bundle folder (``models/NAME``); intermediate files go to ``out/../.NAME-work``.
        preset: candidate model size (``small`` or ``paper``).
        seed: random seed of every stage.
        threads: torch / ONNX Runtime threads (default 1: on a shared 2-core machine, 2 OpenMP
            threads made LSTM training 2 to 10 times slower than 1 in our measurements).
        candidate_model: ``ensemble`` (default: trains the logistic and LSTM generators and
            keeps the best for CCRL, see above) or ``lstm`` (the LSTM baseline needs an LSTM).
        candidate_epochs: override the preset's candidate epochs.
        convnet_pretrain_epochs: ConvNet epochs on the ``train/`` video labels.
        keep_work: keep the intermediate folder (checkpoints, exported graphs) afterwards.
        candidates: reuse a finished ``ccrl train-candidates`` folder (or a ``CandidateResult``)
            instead of training the generator again.
        finetune: a ``training.baselines.FinetuneConfig`` for the baselines (default settings).
        workers: train CCRL on a Dask LocalCluster of this many workers (``training.ccrl_dask``).
        scheduler: train CCRL on the running Dask scheduler at this address instead.
    """
    from training.baselines import segment_set

    run = start_run(
        data,
        out,
        threads=threads,
        preset=preset,
        seed=seed,
        candidate_model=candidate_model,
        candidate_epochs=candidate_epochs,
        convnet_pretrain_epochs=convnet_pretrain_epochs,
        progress=progress,
        keep_work=keep_work,
        finetune=finetune,
    )
    timer = run.timer
    with timer.stage("candidates (train/ video labels)"):
        gens = train_generators(run, candidates)
    with timer.stage("read validate/"):
        val = read_validate(run)
    fit, holdout_maps = fit_ccrl_stage(run, gens, val, workers, scheduler)
    with timer.stage("candidate generation and service classes (holdout)"):
        choose_cg_and_service(run, fit, val)
    with timer.stage("baseline lstm (fine-tune the candidate LSTM)"):
        segments = segment_set(val.videos, gens.num_classes)
        lstm = fit_lstm_baseline(run, gens, segments, val)
    with timer.stage("baseline convnet (pretrain on train/, fine-tune)"):
        convnet, train_videos = fit_convnet_baseline(run, gens, segments, val)
    val.videos = []  # the frames are no longer needed (the baselines keep the rated segments)
    baselines = {"lstm": lstm, "convnet": convnet}
    with timer.stage("ensemble choice (validate holdout)"):
        ensemble = choose_ensemble(fit, val, segments, baselines)
    with timer.stage("new classes from online labels (test/)"):
        online = measure_online_classes(run, fit)
    with timer.stage("bundle"):
        config = train_config(run, gens, val, holdout_maps, fit, baselines, ensemble)
        config["new_classes"] = online
        write_train_bundle(run, gens, fit, baselines, train_videos, config)
    return finish(run, evaluate_bundle(run))


def fit_ccrl_stage(
    run: TrainRun, gens: Generators, val: Validate, workers: int | None, scheduler: str | None
) -> tuple[CcrlFit, dict[str, float]]:
    """Stage 3: the features (generator and embedding) and the GBM of the bundle, chosen on
    cross-fitted holdout scores (``training.stages.ccrl_select``); with ``workers`` or
    ``scheduler``, the same choices by the same code with the features built and every booster
    trained on Dask (``training.ccrl_dask``). Returns the fit and the holdout mAP of every
    candidate."""
    timer = run.timer
    on = " (dask)" if workers or scheduler else ""
    with ccrl_client(workers, scheduler) as client:
        sets: dict[str, FeatureSet] = {}
        for name, graph in gens.graphs.items():
            stage = f"features of the {name} generator (bank, rated pairs, holdout mAP){on}"
            with timer.stage(stage):
                for fs in generator_features(run, name, graph, val, gens.num_classes, client):
                    sets[fs.key] = fs
        chosen = choose_features(sets)
        with timer.stage(f"ccrl: objective, parameters and rounds (cross-fitted holdout){on}"):
            fit = fit_chosen(run, chosen, gens, val, client)
    return fit, {k: f.oof_map for k, f in sets.items()}


@contextmanager
def ccrl_client(workers: int | None, scheduler: str | None) -> Iterator[Any]:
    """A Dask client for the CCRL stage (``--workers`` / ``--scheduler``), or None (one process)."""
    if not workers and not scheduler:
        yield None
        return
    from batch.cluster import dask_client

    with dask_client(workers, scheduler) as client:
        yield client
