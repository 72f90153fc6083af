"""Ranking a corpus with any model of a bundle, with or without candidate generation (CG).

Candidate generation (paper section 3.1) is applied to every model the same way: with CG, the list
of class c holds only the segments of its top-K videos by ``video_probs[c]`` (K = the share of the
videos the bundle chose on its holdout, ``config.cg.video_share``, see :mod:`training.cg_select`;
1/20, the paper's rule, for a bundle without one); without CG, every segment of every video.
CCRL scores only the pairs it needs (with CG alone, only the candidate pairs: that is the point of
CG). ``ensemble``
combines CCRL and the baselines as the bundle says (mean of probabilities or mean of within-list
ranks, chosen on the validate 10% holdout at training time).

``ccrl submit BUNDLE --data PATH --out SUBMISSION.csv [--model M] [--no-cg] [--top N]`` writes the
Kaggle file for the bundle's rated classes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from service.bundle import Bundle, load_bundle
from service.features import build_pair_features
from service.yt8m import SEGMENT_FRAMES, Video

if TYPE_CHECKING:
    from training.ccrl import VideoOutputs

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

ENSEMBLE = "ensemble"
MAX_SHARE = 1.0 / 20.0


def cg_k(num_videos: int, share: float = MAX_SHARE, mean_segments: float | None = None) -> int:
    """Videos kept per class by CG: the largest K with K / num_videos <= ``share`` (at least 1),
    and at most the videos whose mean number of segments (``mean_segments``) fits 100,000."""
    from training.cg_select import videos_per_class

    return videos_per_class(num_videos, share, mean_segments)


@dataclass
class CorpusScores:
    """Scores of every segment of a corpus for the ranked classes.

    Attributes:
        video_ids: [V] video ids, in reading order.
        classes: int64 [R] the ranked classes (column order of every matrix below).
        seg_video: int64 [N] video index of each segment (N segments over all videos).
        seg_start: int64 [N] start frame of each segment.
        video_probs: float32 [V, R] the candidate model's video-level probabilities.
        cg_mask: bool [V, R] True when the video is among the top-K of the class.
        k: videos per class kept by CG.
        scores: model name -> float32 [N, R] (NaN where the model did not score the pair).
        ensemble: {"members": [...], "method": "mean" | "rank"}.
        seconds: stage -> wall seconds.
    """

    video_ids: list[str]
    classes: I64
    seg_video: I64
    seg_start: I64
    video_probs: F32
    cg_mask: npt.NDArray[np.bool_]
    k: int
    scores: dict[str, F32]
    ensemble: dict[str, object] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def num_segments(self) -> int:
        return int(self.seg_video.shape[0])

    def tokens(self) -> npt.NDArray[np.str_]:
        """Segment ids ``"vid:start"``, [N]."""
        vids = np.asarray(self.video_ids, dtype=np.str_)[self.seg_video]
        return np.char.add(np.char.add(vids, ":"), self.seg_start.astype(np.str_))

    @property
    def models(self) -> list[str]:
        names = list(self.scores)
        members = self.ensemble.get("members", [])
        if isinstance(members, list) and members and all(m in self.scores for m in members):
            names.append(ENSEMBLE)
        return names

    def candidate_rows(self, r: int, cg: bool) -> I64:
        """Segment rows in the list of class column ``r`` (with CG: its top-K videos only)."""
        if not cg:
            return np.arange(self.num_segments, dtype=np.int64)
        return np.flatnonzero(self.cg_mask[self.seg_video, r]).astype(np.int64)

    def list_scores(self, model: str, r: int, rows: I64) -> F32:
        """Scores of ``rows`` for class column ``r`` under ``model`` (ensemble combined here)."""
        if model != ENSEMBLE:
            if model not in self.scores:
                raise KeyError(f"model {model!r} was not scored (have {sorted(self.scores)})")
            return self.scores[model][rows, r]
        raw = self.ensemble.get("members", [])
        members = [str(m) for m in raw] if isinstance(raw, list) else []
        parts = np.stack([self.scores[m][rows, r] for m in members])
        w = self.ensemble.get("weights")
        weights = [float(x) for x in w] if isinstance(w, list) else None
        return combine(parts, str(self.ensemble.get("method", "mean")), weights)

    def ranked(self, model: str, cg: bool, top: int = 100_000) -> dict[int, list[str]]:
        """Class id -> ranked segment ids (best first, at most ``top``); stable on ties."""
        tokens = self.tokens()
        out: dict[int, list[str]] = {}
        for r, c in enumerate(self.classes.tolist()):
            rows = self.candidate_rows(r, cg)
            s = self.list_scores(model, r, rows).astype(np.float64)
            if np.isnan(s).any():
                raise ValueError(
                    f"model {model!r}: class {c} has unscored candidate segments "
                    f"({'with' if cg else 'without'} CG)"
                )
            order = np.argsort(-s, kind="stable")[:top]
            out[int(c)] = tokens[rows[order]].tolist()
        return out


def combine(parts: F32, method: str, weights: Sequence[float] | None = None) -> F32:
    """Combine member scores [M, L] of one list into [L]: the weighted mean (``weights`` [M],
    default equal) of the probabilities (``mean``) or of each member's normalized rank within the
    list (``rank``: 1 = best, 0 = worst)."""
    m = parts.shape[0]
    w = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (m,) or not np.isclose(w.sum(), 1.0) or (w < 0).any():
        raise ValueError(f"ensemble weights must be {m} non-negative numbers summing to 1, got {w}")
    if parts.shape[1] == 0:
        return np.zeros(0, np.float32)
    if method == "mean":
        return (w @ parts.astype(np.float64)).astype(np.float32)
    if method == "rank":
        n = parts.shape[1]
        ranks = np.empty_like(parts, dtype=np.float64)
        for i, p in enumerate(parts):
            order = np.argsort(p, kind="stable")  # ascending: the best gets the highest rank
            ranks[i, order] = np.arange(n) / max(n - 1, 1)
        return (w @ ranks).astype(np.float32)
    raise ValueError(f"unknown ensemble method {method!r} (expected 'mean' or 'rank')")


def _needed(models: Sequence[str], bundle: Bundle) -> tuple[bool, list[str]]:
    """(score CCRL?, baselines to run) for the requested models."""
    ens = bundle.manifest.config.get("ensemble", {})
    names: set[str] = set()
    for m in models:
        if m == ENSEMBLE:
            if not ens.get("members"):
                raise ValueError(f"{bundle.path}: the bundle defines no ensemble")
            names.update(str(x) for x in ens["members"])
        else:
            names.add(m)
    known = {"ccrl", *bundle.baseline_paths}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(
            f"unknown model(s) {unknown}: {bundle.path} has {sorted(known)}"
            + (" and 'ensemble'" if ens.get("members") else "")
        )
    return "ccrl" in names, sorted(n for n in names if n != "ccrl")


def score_corpus(
    bundle: Bundle,
    videos: Iterable[Video],
    *,
    models: Sequence[str] = ("ccrl",),
    cg_modes: Sequence[bool] = (True,),
    classes: npt.ArrayLike | None = None,
    k: int | None = None,
    threads: int = 2,
    progress: bool = True,
    total: int | None = None,
    alternative: bool = False,
) -> CorpusScores:
    """Run the bundle's models over a corpus.

    Args:
        bundle: a loaded bundle.
        videos: the videos to rank (read once).
        models: model names (``ccrl``, baseline names, ``ensemble``).
        cg_modes: which CG settings will be ranked: CCRL scores only the CG pairs when only
            ``True`` is asked, every pair otherwise.
        classes: the classes to rank (default: the bundle's rated classes).
        k: videos per class for CG (default :func:`cg_k` of the corpus size and the bundle's
            ``cg.video_share``).
        threads: ONNX Runtime / XGBoost threads.
        alternative: also score the bundle's runner-up GBM (``config.ccrl_alternative``, the
            other objective family) as model ``ccrl[OBJECTIVE]``, with the same pairs.
    """
    t0 = time.perf_counter()
    want_ccrl, baselines = _needed(models, bundle)
    cls = np.asarray(bundle.rated_classes if classes is None else classes, np.int64).reshape(-1)
    if cls.size == 0:
        raise ValueError("no classes to rank")
    videos = tqdm(videos, desc="score videos", unit="video", total=total, disable=not progress)
    outputs, scores = _run_models(bundle, videos, cls, baselines, want_ccrl, threads)
    t1 = time.perf_counter()
    num_seg, seg_video, seg_start = _segment_index(outputs)
    vp = np.stack([o.video_probs[cls] for o in outputs]).astype(np.float32)
    share = bundle_cg_share(bundle)
    mean_seg = float(num_seg.mean()) if len(num_seg) else None
    kk = cg_k(len(outputs), share, mean_seg) if k is None else max(1, min(int(k), len(outputs)))
    cg_mask = _top_k_mask(vp, kk)
    if want_ccrl:
        only_cg = cg_mask if all(cg_modes) else None
        boosters = {"ccrl": bundle.booster, **(alternative_booster(bundle) if alternative else {})}
        scores.update(_score_ccrl(bundle, boosters, outputs, cls, only_cg, num_seg, progress))
    t2 = time.perf_counter()
    return CorpusScores(
        [o.id for o in outputs],
        cls,
        seg_video,
        seg_start,
        vp,
        cg_mask,
        kk,
        scores,
        dict(bundle.manifest.config.get("ensemble", {})),
        {"models_seconds": round(t1 - t0, 2), "ccrl_seconds": round(t2 - t1, 2)},
    )


def _run_models(
    bundle: Bundle,
    videos: Iterable[Video],
    cls: I64,
    baselines: list[str],
    want_ccrl: bool,
    threads: int,
) -> tuple[list[VideoOutputs], dict[str, F32]]:
    """The candidate model's outputs of every video, and each baseline's scores float32 [N, R]
    of the classes ``cls`` (N segments over all videos, in reading order)."""
    from training.baselines import BaselineRunner
    from training.ccrl import CandidateRunner

    runner = CandidateRunner(bundle.candidate_path, threads=threads)
    base_runners = {n: BaselineRunner(bundle.baseline_paths[n], threads=threads) for n in baselines}
    outputs: list[VideoOutputs] = []
    base_scores: dict[str, list[F32]] = {n: [] for n in baselines}
    for v in videos:
        o = runner(v)
        if not want_ccrl:  # keep only what ranking needs
            o.segment_embeddings = o.segment_embeddings[:, :0]
        outputs.append(o)
        if not baselines:
            continue
        frames = v.features()  # a video without frames gets [0, R] (service.candidate.run_baseline)
        for n, br in base_runners.items():
            base_scores[n].append(br(frames)[:, cls].astype(np.float32, copy=False))
    if not outputs:
        raise ValueError("no videos to rank")
    return outputs, {n: np.concatenate(s).astype(np.float32) for n, s in base_scores.items()}


def _segment_index(outputs: Sequence[VideoOutputs]) -> tuple[I64, I64, I64]:
    """Segments per video int64 [V], and each segment's video index and start frame, int64 [N]."""
    num_seg = np.array([o.num_segments for o in outputs], np.int64)
    seg_video = np.repeat(np.arange(len(outputs), dtype=np.int64), num_seg)
    starts = [np.arange(n, dtype=np.int64) for n in num_seg.tolist()]
    return num_seg, seg_video, np.concatenate(starts) * SEGMENT_FRAMES


def _top_k_mask(video_probs: F32, k: int) -> npt.NDArray[np.bool_]:
    """bool [V, R]: True where the video is among the top ``k`` of the class column (stable)."""
    from training.cg_select import top_k_mask

    return top_k_mask(video_probs, k)


def bundle_cg_share(bundle: Bundle) -> float:
    """The share of the videos CG keeps per class: the bundle's holdout choice, else 1/20."""
    return float(bundle.manifest.config.get("cg", {}).get("video_share", MAX_SHARE))


def alternative_booster(bundle: Bundle) -> dict[str, Any]:
    """``{"ccrl[OBJECTIVE]": booster}`` of the bundle's runner-up GBM, or ``{}``."""
    import xgboost as xgb

    alt = bundle.manifest.config.get("ccrl_alternative")
    if not alt or not (bundle.path / alt["file"]).is_file():
        return {}
    booster = xgb.Booster(model_file=str(bundle.path / alt["file"]))
    booster.set_param({"nthread": 1})
    return {f"ccrl[{alt['objective']}]": booster}


def _score_ccrl(
    bundle: Bundle,
    boosters: dict[str, Any],
    outputs: Sequence[VideoOutputs],
    cls: I64,
    cg_mask: npt.NDArray[np.bool_] | None,
    num_seg: I64,
    progress: bool = True,
    chunk_rows: int = 100_000,
) -> dict[str, F32]:
    """Each booster's scores float32 [N, R] of the same pairs; with ``cg_mask`` only the pairs of
    each video's CG classes (NaN elsewhere)."""
    from training.ccrl import score_pairs

    offsets = np.concatenate([[0], np.cumsum(num_seg)]).astype(np.int64)
    out = {n: np.full((int(offsets[-1]), len(cls)), np.nan, np.float32) for n in boosters}
    col = {int(c): i for i, c in enumerate(cls.tolist())}
    xs: list[F32] = []
    dest_rows: list[I64] = []
    dest_cols: list[I64] = []
    pending = 0

    def flush() -> None:
        nonlocal pending
        if not xs:
            return
        x = np.concatenate(xs)
        rows, cols = np.concatenate(dest_rows), np.concatenate(dest_cols)
        for name, booster in boosters.items():
            out[name][rows, cols] = score_pairs(booster, x)
        xs.clear()
        dest_rows.clear()
        dest_cols.clear()
        pending = 0

    for i, o in enumerate(tqdm(outputs, desc="ccrl pairs", unit="video", disable=not progress)):
        if o.num_segments == 0:
            continue
        want = cls if cg_mask is None else cls[cg_mask[i]]
        if want.size == 0:
            continue
        pm = build_pair_features(
            o.video_probs,
            o.segment_probs,
            o.segment_embeddings,
            want,
            bundle.bank,
            o.id,
            max_sim=bundle.max_sim,
        )
        xs.append(pm.x)
        dest_rows.append(offsets[i] + pm.segment_index)
        want_cols = np.array([col[int(c)] for c in want.tolist()], np.int64)
        dest_cols.append(want_cols.repeat(o.num_segments))
        pending += len(pm)
        if pending >= chunk_rows:
            flush()
    flush()
    return out


def run_submit(
    bundle: Path,
    data: Sequence[Path] | Path,
    out: Path,
    *,
    model: str = "ccrl",
    cg: bool = True,
    top: int = 100_000,
    threads: int = 2,
    progress: bool = True,
) -> Path:
    """The ``ccrl submit`` command: rank the bundle's rated classes over ``data`` with ``model``."""
    from service.tfrecord import read_videos
    from training.submission import write_submission

    t0 = time.perf_counter()
    if top < 1:
        raise ValueError(f"--top must be >= 1, got {top}")
    b = load_bundle(bundle, nthread=threads)
    paths = [data] if isinstance(data, (str, Path)) else list(data)
    cs = score_corpus(
        b,
        read_videos(paths, progress=False),
        models=[model],
        cg_modes=[cg],
        threads=threads,
        progress=progress,
    )
    lists = cs.ranked(model, cg, top)
    path = write_submission(out, lists, top=top)
    n = sum(len(v) for v in lists.values())
    print(
        f"{path}: {len(lists)} classes, {n} segments, model {model}, "
        f"{'CG K=' + str(cs.k) + ' videos/class' if cg else 'no CG'}, "
        f"{len(cs.video_ids)} videos, {time.perf_counter() - t0:.1f} s"
    )
    return path
