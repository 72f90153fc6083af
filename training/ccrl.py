"""CCRL training (paper sections 3.3, 3.4, 4.1): candidate outputs, the bank, rated pairs, the GBM.

Protocol (as in the paper): the candidate model is trained on the video labels of ``train/``; the
pairwise GBM is trained on the rated (segment, class) pairs of ``validate/``, split 90/10 by video
for early stopping and a small hyperparameter search, then refit on all the rated pairs with the
chosen settings and number of rounds.

The bank used for training features holds the labelled ``validate/`` segments; each training pair's
features exclude its own video's bank entries (``build_pair_features(..., video_id=v)``), so no
feature of a pair uses its own video's labels. At test time the whole bank is used (a test video is
never in it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb
from tqdm.auto import tqdm

from service import candidate
from service.bank import ClassBank
from service.bundle import predict_pairs
from service.features import FEATURE_NAMES, FEATURE_TYPES, build_pair_features
from service.yt8m import SEGMENT_FRAMES, Video, segment_id

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# --------------------------------------------------------------------------------------------
# Candidate outputs per video
# --------------------------------------------------------------------------------------------


@dataclass
class VideoOutputs:
    """The candidate graph's outputs for one video, and its in-range segment ratings.

    Attributes:
        id: video id.
        video_probs: float32 [C].
        segment_probs: float32 [S, C].
        segment_embeddings: float32 [S, D].
        rated_class: int64 [R], class of each rating (ratings past the last segment dropped).
        rated_segment: int64 [R], segment index (start // 5) of each rating.
        rated_label: float32 [R], 1.0 positive / 0.0 negative.
    """

    id: str
    video_probs: F32
    segment_probs: F32
    segment_embeddings: F32
    rated_class: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    rated_segment: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    rated_label: F32 = field(default_factory=lambda: np.zeros(0, np.float32))

    @property
    def num_segments(self) -> int:
        return int(self.segment_probs.shape[0])

    def tokens(self) -> list[str]:
        """Segment ids ``"vid:start"`` of every segment, [S]."""
        return [segment_id(self.id, s * SEGMENT_FRAMES) for s in range(self.num_segments)]


def in_range_ratings(video: Video) -> tuple[I64, I64, F32, int]:
    """(classes [R], segment indices [R], labels [R], dropped) of a video's ratings.

    Ratings whose start is not a whole segment of the video are dropped (counted in ``dropped``);
    a (segment, class) rated twice keeps the max (a positive wins), like the metric.
    """
    s = video.num_segments
    starts = np.asarray(video.segment_starts, np.int64)
    seg = starts // SEGMENT_FRAMES
    ok = (starts >= 0) & (seg < s) & (starts % SEGMENT_FRAMES == 0)
    cls = np.asarray(video.segment_labels, np.int64)[ok]
    seg = seg[ok]
    lab = (np.asarray(video.segment_scores, np.float64)[ok] >= 0.5).astype(np.float32)
    dropped = int((~ok).sum())
    if len(cls):
        key = cls * max(s, 1) + seg
        order = np.lexsort((-lab, key))  # by key, positives first
        first = np.ones(len(key), bool)
        first[1:] = key[order][1:] != key[order][:-1]
        keep = order[first]
        cls, seg, lab = cls[keep], seg[keep], lab[keep]
    return cls, seg, lab, dropped


class CandidateRunner:
    """Runs ``candidate.onnx`` on videos (:mod:`service.candidate`, the serving call; CPU)."""

    def __init__(self, onnx_path: str | Path, *, threads: int = 1) -> None:
        self.path = Path(onnx_path)
        self.session = candidate.open_session(self.path, threads=threads)
        self.num_classes, self.embedding_dim = candidate.graph_dims(self.session)

    def __call__(self, video: Video) -> VideoOutputs:
        """One video -> its outputs (and its in-range ratings); a video without frames gets zero
        probabilities and no segments."""
        out = candidate.run(self.session, video.features())
        cls, seg, lab, _ = in_range_ratings(video)
        return VideoOutputs(
            video.id,
            out.video_probs,
            out.segment_probs,
            out.segment_embeddings,
            cls,
            seg,
            lab,
        )

    def run_all(
        self, videos: Iterable[Video], *, desc: str = "candidate", progress: bool = True
    ) -> list[VideoOutputs]:
        """Outputs of every video, with a progress bar; logs dropped out-of-range ratings."""
        out: list[VideoOutputs] = []
        dropped = 0
        for v in tqdm(videos, desc=desc, unit="video", disable=not progress, leave=False):
            o = self(v)
            dropped += len(v.segment_labels) - len(o.rated_class)
            out.append(o)
        if dropped:
            log.warning(
                "%s: %d rating(s) skipped (past the last segment or repeated)", desc, dropped
            )
        return out


# --------------------------------------------------------------------------------------------
# Bank and rated pairs
# --------------------------------------------------------------------------------------------


def rated_entries(
    outputs: Sequence[VideoOutputs],
) -> tuple[F32, I64, F32, list[str], I64]:
    """The labelled segments of ``outputs`` in order: (embeddings [N, D], classes [N], labels [N],
    video ids [N], starts [N]); N = 0 gives empty arrays (D = 0)."""
    emb, cls, lab, vid, start = [], [], [], [], []
    for o in outputs:
        if len(o.rated_class) == 0:
            continue
        emb.append(o.segment_embeddings[o.rated_segment])
        cls.append(o.rated_class)
        lab.append(o.rated_label)
        vid.extend([o.id] * len(o.rated_class))
        start.append(o.rated_segment * SEGMENT_FRAMES)
    if not emb:
        z = np.zeros(0, np.int64)
        return np.zeros((0, 0), np.float32), z, np.zeros(0, np.float32), [], z
    return np.concatenate(emb), np.concatenate(cls), np.concatenate(lab), vid, np.concatenate(start)


def build_bank(outputs: Sequence[VideoOutputs], num_classes: int) -> ClassBank:
    """The labelled-embedding bank of the rated segments of ``outputs`` (C classes)."""
    emb, cls, lab, vid, start = rated_entries(outputs)
    if not len(cls):
        dim = outputs[0].segment_embeddings.shape[1] if outputs else 1
        return ClassBank.empty(num_classes, dim)
    return ClassBank.from_entries(emb, cls, lab, vid, start, num_classes=num_classes)


@dataclass
class PairSet:
    """Rated (segment, class) pairs with their features.

    Attributes:
        x: float32 [N, NF] feature rows (columns FEATURE_NAMES).
        y: float32 [N] labels.
        video: int64 [N] index of the pair's video in the outputs list.
        class_ids: int64 [N].
        segment: int64 [N] segment index within the video.
    """

    x: F32
    y: F32
    video: I64
    class_ids: I64
    segment: I64

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, mask: npt.NDArray[np.bool_]) -> PairSet:
        return PairSet(
            self.x[mask], self.y[mask], self.video[mask], self.class_ids[mask], self.segment[mask]
        )


def rated_pairs(
    outputs: Sequence[VideoOutputs],
    bank: ClassBank,
    *,
    max_sim: bool = True,
    exclude_own: bool = True,
    progress: bool = True,
) -> PairSet:
    """Feature rows of every rated pair of ``outputs``.

    With ``exclude_own`` (training) each video's own bank entries are excluded from its features.
    """
    xs, ys, vids, cls_l, segs = [], [], [], [], []
    for i, o in enumerate(tqdm(outputs, desc="pairs", unit="video", disable=not progress)):
        if len(o.rated_class) == 0:
            continue
        classes = np.unique(o.rated_class)
        pm = build_pair_features(
            o.video_probs,
            o.segment_probs,
            o.segment_embeddings,
            classes,
            bank,
            o.id if exclude_own else None,
            max_sim=max_sim,
        )
        k = np.searchsorted(classes, o.rated_class)
        rows = k * o.num_segments + o.rated_segment
        xs.append(pm.x[rows])
        ys.append(o.rated_label)
        vids.append(np.full(len(rows), i, np.int64))
        cls_l.append(o.rated_class)
        segs.append(o.rated_segment)
    if not xs:
        raise ValueError("no rated (segment, class) pairs to train on (is the split rated?)")
    return PairSet(
        np.concatenate(xs),
        np.concatenate(ys).astype(np.float32),
        np.concatenate(vids),
        np.concatenate(cls_l),
        np.concatenate(segs),
    )


def split_by_video(
    num_videos: int, holdout: float = 0.1, seed: int = 0
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """90/10 split of video indices: (is_train [V], is_holdout [V]) boolean masks."""
    if num_videos < 2:
        raise ValueError(f"need at least 2 rated videos for a holdout split, got {num_videos}")
    n_hold = min(max(1, round(num_videos * holdout)), num_videos - 1)
    perm = np.random.default_rng([seed, 4099]).permutation(num_videos)
    hold = np.zeros(num_videos, bool)
    hold[perm[:n_hold]] = True
    return ~hold, hold


def pairs_map(
    scores: npt.ArrayLike, class_ids: npt.ArrayLike, tokens: Sequence[str], labels: npt.ArrayLike
) -> float:
    """mAP (training/metric.py) of rated pairs ranked by ``scores`` within each class.

    Args:
        scores: float [N]; class_ids: int [N]; tokens: [N] segment ids; labels: [N] 0/1.
    """
    per_class = pairs_class_ap(scores, class_ids, tokens, labels)
    return sum(per_class.values()) / len(per_class) if per_class else 0.0


def pairs_class_ap(
    scores: npt.ArrayLike, class_ids: npt.ArrayLike, tokens: Sequence[str], labels: npt.ArrayLike
) -> dict[int, float]:
    """AP of each class with a positive pair (the terms of :func:`pairs_map`'s mean), same args."""
    from training.metric import per_class_average_precision

    s = np.asarray(scores, np.float64)
    c = np.asarray(class_ids, np.int64)
    lab = np.asarray(labels, np.float64)
    ratings: dict[int, dict[str, float]] = {}
    preds: dict[int, list[str]] = {}
    order = np.lexsort((-s, c))
    for j in order.tolist():
        cj = int(c[j])
        ratings.setdefault(cj, {})[tokens[j]] = float(lab[j])
        preds.setdefault(cj, []).append(tokens[j])
    return per_class_average_precision(preds, ratings)


# --------------------------------------------------------------------------------------------
# The GBM
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CcrlConfig:
    """XGBoost settings. Trees and depth are a serving latency budget: the booster runs once per
    request over every (segment, class) pair (loadtests/bench_features.py measures it)."""

    max_rounds: int = 300
    early_stopping: int = 30
    nthread: int = 1
    max_sim: bool = True
    folds: int = 5
    objectives: tuple[str, ...] = (
        "binary:logistic",
        "rank:map",
        "rank:ndcg",
        "rank:pairwise",
    )
    grid: tuple[dict[str, float], ...] = (
        {"max_depth": 4, "eta": 0.1, "min_child_weight": 1.0},
        {"max_depth": 6, "eta": 0.1, "min_child_weight": 1.0},
        {"max_depth": 4, "eta": 0.05, "min_child_weight": 4.0},
        {"max_depth": 6, "eta": 0.05, "min_child_weight": 4.0},
    )
    base: tuple[tuple[str, Any], ...] = (
        ("objective", "binary:logistic"),
        ("eval_metric", "logloss"),
        ("tree_method", "hist"),
        ("subsample", 0.9),
        ("colsample_bytree", 0.9),
        ("max_cat_to_onehot", 1),
        ("max_bin", 256),
    )

    def params(self, choice: dict[str, float], seed: int) -> dict[str, Any]:
        p: dict[str, Any] = dict(self.base)
        p.update(choice)
        p["max_depth"] = int(p["max_depth"])
        p["nthread"] = self.nthread
        p["seed"] = seed
        return p


@dataclass
class CcrlModel:
    """A trained CCRL booster and how it was chosen.

    Attributes:
        booster: trained on all rated pairs with the chosen params and rounds.
        params: the XGBoost params.
        rounds: boosting rounds of the final model.
        search: per grid entry {params, best_rounds, holdout_logloss, holdout_map}
            (:func:`train_ccrl`), or per (objective, grid entry) {objective, params, rounds,
            oof_map} (:func:`train_ccrl_crossfit`).
        holdout_scores: float32 [N] scores of the holdout pairs by the chosen 90% model (NaN for
            training pairs; :func:`train_ccrl`), or the cross-fitted score of every pair
            (:func:`train_ccrl_crossfit`), for choosing the ensemble and candidate generation.
        importance: feature -> total gain of the final model.
    """

    booster: xgb.Booster
    params: dict[str, Any]
    rounds: int
    search: list[dict[str, Any]]
    holdout_scores: F32
    importance: dict[str, float]
    seconds: float

    def info(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "rounds": self.rounds,
            "search": self.search,
            "importance": self.importance,
            "seconds": round(self.seconds, 2),
        }


def _dmatrix(x: F32, y: F32 | None = None) -> xgb.DMatrix:
    return xgb.DMatrix(
        x,
        label=y,
        feature_names=list(FEATURE_NAMES),
        feature_types=list(FEATURE_TYPES),
        enable_categorical=True,
        missing=np.nan,
    )


def train_ccrl(
    pairs: PairSet,
    holdout_video: npt.NDArray[np.bool_],
    tokens: Sequence[str],
    cfg: CcrlConfig | None = None,
    *,
    seed: int = 0,
    progress: bool = True,
) -> CcrlModel:
    """Train the pairwise GBM: grid search on the 90% / 10% video split, then refit on all.

    Args:
        pairs: the rated pairs of ``validate/`` with leakage-free features.
        holdout_video: bool [V], the videos held out (index = ``pairs.video``).
        tokens: [N] segment ids of the pairs (for the holdout mAP).
        cfg: settings; default :class:`CcrlConfig`.
    """
    cfg = cfg or CcrlConfig()
    t0 = time.perf_counter()
    hold = holdout_video[pairs.video]
    if hold.all() or not hold.any():
        raise ValueError("the holdout split must leave pairs on both sides")
    tr, ho = pairs.subset(~hold), pairs.subset(hold)
    dtr, dho = _dmatrix(tr.x, tr.y), _dmatrix(ho.x, ho.y)
    ho_tokens = [tokens[i] for i in np.flatnonzero(hold).tolist()]
    search: list[dict[str, Any]] = []
    best: tuple[float, float, int, dict[str, Any], F32] | None = None
    for choice in tqdm(cfg.grid, desc="ccrl search", disable=not progress, leave=False):
        params = cfg.params(choice, seed)
        res: dict[str, Any] = {}
        bst = xgb.train(
            params,
            dtr,
            num_boost_round=cfg.max_rounds,
            evals=[(dho, "holdout")],
            early_stopping_rounds=cfg.early_stopping,
            evals_result=res,
            verbose_eval=False,
        )
        rounds = int(bst.best_iteration) + 1
        pred = bst.predict(dho, iteration_range=(0, rounds)).astype(np.float32)
        m = pairs_map(pred, ho.class_ids, ho_tokens, ho.y)
        loss = float(res["holdout"]["logloss"][rounds - 1])
        search.append({**choice, "best_rounds": rounds, "holdout_logloss": loss, "holdout_map": m})
        key = (m, -loss)
        if best is None or key > (best[0], best[1]):
            best = (m, -loss, rounds, params, pred)
    assert best is not None
    _, _, rounds, params, pred = best
    final = xgb.train(params, _dmatrix(pairs.x, pairs.y), num_boost_round=rounds)
    holdout_scores = np.full(len(pairs), np.nan, np.float32)
    holdout_scores[hold] = pred
    gain = {k: float(v) for k, v in final.get_score(importance_type="total_gain").items()}  # type: ignore[arg-type]
    importance = {k: round(v, 3) for k, v in sorted(gain.items(), key=lambda kv: -kv[1])}
    return CcrlModel(
        final, params, rounds, search, holdout_scores, importance, time.perf_counter() - t0
    )


def train_ccrl_crossfit(
    pairs: PairSet,
    fold_video: npt.NDArray[np.int64],
    tokens: Sequence[str],
    cfg: CcrlConfig | None = None,
    *,
    seed: int = 0,
    fitter: Any = None,
) -> tuple[CcrlModel, Any]:
    """Train the pairwise GBM with the objective, parameters and rounds chosen on cross-fitted
    holdout scores (:mod:`training.objectives`), then refit on all pairs.

    Args:
        pairs: the rated pairs of ``validate/`` with leakage-free features.
        fold_video: int64 [V], the cross-fitting fold of each video (index = ``pairs.video``).
        tokens: [N] segment ids of the pairs.
        fitter: where every booster is trained, the refit too (a
            :data:`training.crossfit.Fitter` bound to ``pairs``; default: this process).

    Returns:
        (the model, whose ``holdout_scores`` are the cross-fitted scores of every pair; the
        :class:`training.objectives.GbmChoice` with every candidate's cross-fitted mAP).
    """
    from training.crossfit import LocalFitter
    from training.objectives import select_gbm

    cfg = cfg or CcrlConfig()
    t0 = time.perf_counter()
    fitter = fitter or LocalFitter(pairs.x, pairs.y, pairs.class_ids)
    choice = select_gbm(
        pairs.x,
        pairs.y,
        pairs.class_ids,
        tokens,
        fold_video[pairs.video],
        lambda c: cfg.params(c, seed),
        cfg.grid,
        objectives=cfg.objectives,
        max_rounds=cfg.max_rounds,
        fitter=fitter,
    )
    final = fitter(np.arange(len(pairs), dtype=np.int64), choice.params, choice.rounds)
    gain = {k: float(v) for k, v in final.get_score(importance_type="total_gain").items()}  # type: ignore[arg-type]
    importance = {k: round(v, 3) for k, v in sorted(gain.items(), key=lambda kv: -kv[1])}
    model = CcrlModel(
        final,
        choice.params,
        choice.rounds,
        choice.tried,
        choice.oof_scores,
        importance,
        time.perf_counter() - t0,
    )
    return model, choice


def score_pairs(booster: xgb.Booster, x: F32, *, chunk: int = 200_000) -> F32:
    """CCRL scores of a pair matrix float32 [N, NF] -> float32 [N] (the shared predict_pairs)."""
    if len(x) <= chunk:
        return predict_pairs(booster, x)
    return np.concatenate(
        [predict_pairs(booster, x[a : a + chunk]) for a in range(0, len(x), chunk)]
    )


def config_dict(cfg: CcrlConfig) -> dict[str, Any]:
    """JSON-ready view of a :class:`CcrlConfig`."""
    d = asdict(cfg)
    d["grid"] = [dict(g) for g in cfg.grid]
    d["objectives"] = list(cfg.objectives)
    d["base"] = dict(cfg.base)
    return d


def with_threads(cfg: CcrlConfig, nthread: int) -> CcrlConfig:
    return replace(cfg, nthread=nthread)
