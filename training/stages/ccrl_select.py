"""Stage 3 of ``ccrl train``: the generator and embedding of CCRL, then its GBM, on cross-fitted
holdout scores.

For every generator (logistic, lstm, their ensemble): its outputs on ``validate/`` (ONNX Runtime,
the graph the service runs), and for every segment embedding it can give the similarity features
(its own: the LSTM's hidden states, the logistic's mean frames; and the segments' mean frames,
:data:`EMBEDDINGS`) the bank of the labelled segments and the leakage-free features of the rated
pairs. Each (generator, embedding) is scored by the cross-fitted holdout mAP
(:mod:`training.crossfit`) of one standard GBM (``binary:logistic``, the first grid entry); the
best one is kept, the LSTM's when it is within :data:`LSTM_MARGIN` of the best (the product's
generator is the LSTM; the logistic model is shipped only when it wins on the holdout). The GBM
of the kept features is then chosen among objectives, parameters and rounds
(:func:`training.ccrl.train_ccrl_crossfit`) and refit on every rated pair.

With a Dask client (``ccrl train --workers N`` / ``--scheduler``) the same feature sets are built
on the workers (``training.ccrl_dask``: the generator, the banks and the pair features) and every
booster of the same rules is trained there (``xgboost.dask``,
:class:`training.ccrl_dask.DaskFitter`); the choices are made by the same functions below.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.yt8m import SEGMENT_FRAMES, segment_id

if TYPE_CHECKING:
    from service.bank import ClassBank
    from training.ccrl import PairSet, VideoOutputs
    from training.crossfit import Fitter
    from training.stages.ccrl_fit import CcrlFit
    from training.stages.generators import Generators
    from training.stages.run import TrainRun
    from training.stages.validate import Validate

LSTM_MARGIN = 0.005
"""The LSTM generator is kept when its holdout mAP is at most this below the best."""
EMBEDDINGS = ("own", "frames")
"""``own``: the generator's segment embeddings; ``frames``: the segments' mean frames."""


@dataclass
class FeatureSet:
    """One (generator, embedding): the validate outputs, the bank and the rated pairs.

    Attributes:
        generator: logistic, lstm or ensemble; ``embedding``: ``hidden`` (the LSTM's hidden
            states) or ``frames`` (mean frames, the logistic model's own embedding).
        graph: the generator's ONNX graph (its own embeddings).
        outputs: the generator's outputs of every ``validate/`` video, with these embeddings.
        bank, pairs, tokens: the bank of the labelled segments, the rated pairs, their ids.
        oof_map: cross-fitted holdout mAP of the standard GBM on these features.
    """

    generator: str
    embedding: str
    graph: Path
    outputs: list[VideoOutputs]
    bank: ClassBank
    pairs: PairSet
    tokens: list[str]
    oof_map: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.generator}/{self.embedding}"


def segment_means(video: Any) -> np.ndarray:
    """The mean frame of every whole segment of a video: float32 [S, 1152]."""
    x, s = video.features(), video.num_segments
    return x[: s * SEGMENT_FRAMES].reshape(s, SEGMENT_FRAMES, -1).mean(1, dtype=np.float32)


def _segment_means(val: Validate) -> list[np.ndarray]:
    """The mean frame of every whole segment of every validate video: float32 [S_v, 1152]."""
    return [segment_means(v) for v in val.videos]


def own_embedding(generator: str) -> str:
    """The embedding a generator's graph gives: mean frames (logistic) or hidden states."""
    return "frames" if generator == "logistic" else "hidden"


def embeddings_of(generator: str) -> tuple[str, ...]:
    """The embeddings tried for ``generator``: its own, and mean frames when its own are not."""
    own = own_embedding(generator)
    return (own,) if own == "frames" else (own, "frames")


def pair_tokens(video_ids: list[str], pairs: PairSet) -> list[str]:
    """The segment id of every rated pair: [N]."""
    return [
        segment_id(video_ids[v], s * SEGMENT_FRAMES)
        for v, s in zip(pairs.video.tolist(), pairs.segment.tolist(), strict=True)
    ]


def _feature_set(
    run: TrainRun,
    name: str,
    embedding: str,
    graph: Path,
    outs: list[VideoOutputs],
    num_classes: int,
) -> FeatureSet:
    """Bank, rated pairs and the cross-fitted mAP of the standard GBM for one embedding."""
    from training.ccrl import build_bank, rated_pairs

    bank = build_bank(outs, num_classes)
    pairs = rated_pairs(outs, bank, max_sim=run.ccrl.max_sim, progress=False)
    tokens = pair_tokens([o.id for o in outs], pairs)
    return score_features(run, FeatureSet(name, embedding, graph, outs, bank, pairs, tokens))


def score_features(run: TrainRun, fs: FeatureSet, fitter: Fitter | None = None) -> FeatureSet:
    """Set ``fs.oof_map``: the cross-fitted holdout mAP of the standard GBM (``binary:logistic``,
    the first grid entry, the best round count) on its pairs, trained by ``fitter`` (default:
    this process); returns ``fs``."""
    from training.crossfit import oof_curve
    from training.objectives import objective_params

    pairs, bank = fs.pairs, fs.bank
    params = objective_params(run.ccrl.params(run.ccrl.grid[0], run.seed), "binary:logistic")
    fold = run_folds(run, len(fs.outputs))[pairs.video]
    curve = oof_curve(
        pairs.x,
        pairs.y,
        pairs.class_ids,
        fs.tokens,
        fold,
        params,
        run.ccrl.max_rounds,
        fitter=fitter,
    )
    fs.oof_map = curve.maps[curve.best]
    print(
        f"  {fs.key}: bank {len(bank)} segments, D={bank.dim}; {len(pairs)} pairs; "
        f"cross-fitted holdout mAP {fs.oof_map:.4f} ({curve.rounds[curve.best]} rounds)"
    )
    return fs


def run_folds(run: TrainRun, num_videos: int) -> np.ndarray:
    """The cross-fitting fold of every validate video: int64 [V] (seeded by the run)."""
    from training.crossfit import video_folds

    return video_folds(num_videos, min(run.ccrl.folds, num_videos), run.seed)


def generator_features(
    run: TrainRun, name: str, graph: Path, val: Validate, num_classes: int, client: Any = None
) -> list[FeatureSet]:
    """The feature sets of generator ``name``: its own embeddings, and mean frames when its
    own are not mean frames already (the logistic model's are) (:func:`embeddings_of`); with a
    Dask ``client``, built and scored on its workers."""
    from training.ccrl import CandidateRunner

    if client is not None:
        from training.ccrl_dask import DaskFitter, dask_feature_sets

        sets = dask_feature_sets(client, run, name, graph, val, num_classes)
        return [score_features(run, fs, DaskFitter(client, fs.pairs)) for fs in sets]
    runner = CandidateRunner(graph, threads=run.threads)
    outs = runner.run_all(val.videos, desc=f"validate ({name})", progress=run.progress)
    own = own_embedding(name)
    sets = [_feature_set(run, name, own, graph, outs, num_classes)]
    if own != "frames":
        means = val.segment_means if val.segment_means is not None else _segment_means(val)
        val.segment_means = means
        swapped = [replace(o, segment_embeddings=m) for o, m in zip(outs, means, strict=True)]
        sets.append(_feature_set(run, name, "frames", graph, swapped, num_classes))
    return sets


def choose_features(sets: dict[str, FeatureSet], margin: float = LSTM_MARGIN) -> FeatureSet:
    """The best feature set on the holdout; an LSTM one when within ``margin`` of the best."""
    best = max(sets.values(), key=lambda f: f.oof_map)
    lstm = [f for f in sets.values() if f.generator == "lstm"]
    pick = best
    if lstm and best.generator != "lstm":
        top = max(lstm, key=lambda f: f.oof_map)
        if top.oof_map >= best.oof_map - margin:
            pick = top
    print(
        f"  features for the bundle: {pick.key} (holdout mAP {pick.oof_map:.4f}; best "
        f"{best.key} {best.oof_map:.4f})"
    )
    return pick


def frames_graph(run: TrainRun, gens: Generators, generator: str) -> Path:
    """Export ``generator`` with mean-frame segment embeddings (for a ``frames`` choice)."""
    from training.candidates import EnsembleModel, LogisticModel, model_from_checkpoint
    from training.candidates.models import FrameEmbeddings
    from training.export import check_graph, export_onnx

    model: Any = gens.lstm
    if generator == "ensemble":
        logistic = model_from_checkpoint(gens.result.checkpoints["logistic"])
        assert isinstance(logistic, LogisticModel)
        model = EnsembleModel(logistic, gens.lstm)
    wrapped = FrameEmbeddings(model).eval()
    path = run.work / f"{generator}-frames" / "candidate.onnx"
    export_onnx(wrapped, path, extra_metadata={"seed": str(run.seed)})
    check_graph(wrapped, path, frame_counts=(4, 5, 12, 123), atol=1e-4)
    return path


def fit_chosen(
    run: TrainRun, fs: FeatureSet, gens: Generators, val: Validate, client: Any = None
) -> CcrlFit:
    """The GBM of the kept features (objective, parameters, rounds cross-fitted; refit on all),
    every booster trained on the workers of the Dask ``client`` when one is given."""
    from training.ccrl import train_ccrl_crossfit
    from training.stages.ccrl_fit import CcrlFit

    fitter = None
    if client is not None:
        from training.ccrl_dask import DaskFitter

        fitter = DaskFitter(client, fs.pairs)
    model, choice = train_ccrl_crossfit(
        fs.pairs,
        run_folds(run, len(fs.outputs)),
        fs.tokens,
        run.ccrl,
        seed=run.seed,
        fitter=fitter,
    )
    if fitter is not None:
        model.booster.set_param({"nthread": run.ccrl.nthread})
    per = {k: round(v, 4) for k, v in choice.per_objective().items()}
    print(
        f"  ccrl: {choice.objective}, {choice.rounds} rounds (cross-fitted holdout mAP "
        f"{choice.oof_map:.4f}; per objective {per})"
    )
    graph = fs.graph
    if fs.embedding == "frames" and fs.generator != "logistic":
        graph = frames_graph(run, gens, fs.generator)
    fit = CcrlFit(fs.generator, graph, fs.bank, fs.pairs, fs.tokens, model, choice.oof_map)
    fit.embedding, fit.outputs, fit.gbm = fs.embedding, fs.outputs, choice
    return fit
