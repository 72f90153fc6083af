"""Pairwise (segment, class) features for CCRL, shared by training and serving (numpy only).

For a segment ``s`` of a video ``v`` and a class ``c`` one feature row holds the class id
(categorical), the candidate model's outputs for ``c`` around ``s`` (``video_probs[c]``,
``segment_probs[s, c]``, its neighbours, its rank within the video, ...) and the similarity
features of the paper's section 3.4: the summed and mean cosine similarity of ``s`` to the labelled
positive / negative segments of ``c`` from OTHER videos (``u != v``).

A sum of cosines is one dot product with a per-class sum of unit vectors, so the cost per pair is
O(D) whatever the bank size; the "other videos" rule subtracts the sum of the bank entries of ``v``
(a video has only a handful of rated segments, so that sum is computed on the fly from the bank's
per-class video index). The optional max-cosine features scan at most ``bank.scan_cap`` positives
and negatives of each requested class (a fixed sample by key hash; every entry below the cap), in
one matrix product: their cost is bounded whatever the bank size (:mod:`service.bank_class`).

Row order of a :class:`PairMatrix` is class-major: row ``k * S + s`` is (segment ``s``, class
``classes[k]``), so ``scores.reshape(K, S)`` gives one row of segment scores per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.bank import ClassBank, unit_rows

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

FEATURE_NAMES: tuple[str, ...] = (
    "class_id",  # categorical: the trees group classes (the paper's one-hot class encoding)
    "video_prob",  # video_probs[c]
    "video_class_rank",  # rank of c among all classes of the video (0 = the video's top class)
    "seg_prob",  # segment_probs[s, c]
    "seg_prob_prev",  # segment_probs[s - 1, c] (NaN for the first segment)
    "seg_prob_next",  # segment_probs[s + 1, c] (NaN for the last segment)
    "seg_prob_smooth",  # mean of segment_probs[s - 1 .. s + 1, c] (the neighbours that exist)
    "seg_prob_rank",  # rank of s among the video's segments for c, in [0, 1] (0 = best)
    "seg_prob_video_max",  # max over the video's segments of segment_probs[:, c]
    "seg_prob_video_mean",  # mean over the video's segments of segment_probs[:, c]
    "seg_prob_rel_max",  # segment_probs[s, c] / max over segments
    "seg_class_rank",  # number of classes scoring higher than c on segment s
    "seg_top_prob",  # max over classes of segment_probs[s, :]
    "seg_position",  # s / (S - 1), in [0, 1]
    "num_segments",  # S
    "sim_pos_sum",  # sum of cos(s, x) over positives x of c from other videos
    "sim_pos_mean",  # sim_pos_sum / pos_count (NaN when no positive)
    "sim_neg_sum",  # the same for the negatives of c
    "sim_neg_mean",
    "sim_mean_diff",  # sim_pos_mean - sim_neg_mean
    "sim_mean_diff_prev",  # sim_mean_diff of segment s - 1 (NaN for the first segment)
    "sim_mean_diff_next",  # sim_mean_diff of segment s + 1 (NaN for the last segment)
    "sim_pos_max",  # max cosine to a positive of c from another video (NaN when off / none)
    "sim_neg_max",
    "sim_max_diff",  # sim_pos_max - sim_neg_max
    "pos_count",  # positives of c in the bank, other videos only
    "neg_count",
    "class_pos_rate",  # pos_count / (pos_count + neg_count) (NaN when the class has no entry)
)
"""Column order of the pair matrix; the manifest stores it and the service checks it."""

CATEGORICAL: tuple[str, ...] = ("class_id",)
"""Columns that XGBoost treats as categorical (``feature_types`` ``'c'``)."""

FEATURE_TYPES: tuple[str, ...] = tuple("c" if n in CATEGORICAL else "q" for n in FEATURE_NAMES)
"""XGBoost ``feature_types`` matching :data:`FEATURE_NAMES`."""

_COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


@dataclass(frozen=True)
class PairMatrix:
    """The pair features of one video.

    Attributes:
        x: float32 [S * K, NF], columns :data:`FEATURE_NAMES`, rows class-major (``k * S + s``).
        class_ids: int64 [S * K], the class of each row.
        segment_index: int64 [S * K], the segment (0..S-1) of each row.
    """

    x: F32
    class_ids: I64
    segment_index: I64

    def __len__(self) -> int:
        return int(self.x.shape[0])


def build_pair_features(
    video_probs: npt.ArrayLike,
    segment_probs: npt.ArrayLike,
    segment_embeddings: npt.ArrayLike,
    classes: npt.ArrayLike,
    bank: ClassBank,
    video_id: str | None = None,
    *,
    max_sim: bool = True,
) -> PairMatrix:
    """Feature rows for every (segment, class) pair of one video, fully vectorized.

    Args:
        video_probs: float [C], the candidate model's video-level class probabilities.
        segment_probs: float [S, C], the same model applied to each 5-frame segment.
        segment_embeddings: float [S, D], segment encodings (cosine similarity is taken on them).
        classes: int [K], the classes to score (e.g. the video's candidate classes).
        bank: the labelled-embedding bank (C classes, D dims).
        video_id: the video's id; the bank's entries of this video are excluded (u != v).
        max_sim: compute the max-cosine features (a scan of the bank entries of the K classes);
            when False the three max-cosine columns are NaN.

    Returns:
        :class:`PairMatrix` with ``S * K`` rows, class-major.
    """
    vp = np.asarray(video_probs, dtype=np.float32)
    sp = np.asarray(segment_probs, dtype=np.float32)
    se = np.asarray(segment_embeddings, dtype=np.float32)
    cls = np.asarray(classes, dtype=np.int64).reshape(-1)
    _check_inputs(vp, sp, se, cls, bank)
    num_seg, k, nf = sp.shape[0], cls.shape[0], len(FEATURE_NAMES)
    if num_seg == 0 or k == 0:
        return PairMatrix(
            np.zeros((0, nf), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
        )
    x = np.empty((k, num_seg, nf), dtype=np.float32)  # class-major view of the pair rows
    _video_features(x, vp, cls)
    _segment_features(x, sp, cls)
    _similarity_features(x, se, cls, bank, video_id, max_sim=max_sim)
    class_ids = np.repeat(cls, num_seg)
    segment_index = np.tile(np.arange(num_seg, dtype=np.int64), k)
    return PairMatrix(x.reshape(k * num_seg, nf), class_ids, segment_index)


def _video_features(x: F32, vp: F32, cls: I64) -> None:
    """Fill the class and video-level columns of ``x`` ([K, S, NF]) from video_probs [C]."""
    x[:, :, _COL["class_id"]] = cls[:, None].astype(np.float32)
    x[:, :, _COL["video_prob"]] = vp[cls][:, None]
    higher = (vp[None, :] > vp[cls][:, None]).sum(axis=1)  # [K]
    x[:, :, _COL["video_class_rank"]] = higher[:, None].astype(np.float32)


def _segment_features(x: F32, sp: F32, cls: I64) -> None:
    """Fill the ``seg_*`` columns and ``num_segments`` of ``x`` ([K, S, NF]) from
    segment_probs [S, C]."""
    k, num_seg = x.shape[0], x.shape[1]
    p = sp[:, cls].T  # [K, S]: segment_probs[s, c] per requested class

    def put(name: str, value: npt.ArrayLike) -> None:
        x[:, :, _COL[name]] = value

    put("seg_prob", p)
    prev = np.full_like(p, np.nan)
    prev[:, 1:] = p[:, :-1]
    nxt = np.full_like(p, np.nan)
    nxt[:, :-1] = p[:, 1:]
    put("seg_prob_prev", prev)
    put("seg_prob_next", nxt)
    with np.errstate(invalid="ignore"):
        stacked = np.stack([prev, p, nxt])
        put("seg_prob_smooth", np.nansum(stacked, axis=0) / (~np.isnan(stacked)).sum(axis=0))
    # rank of s among the video's segments for class c: 0 = best, normalized by S - 1
    order = np.argsort(-p, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(num_seg)[None, :].repeat(k, axis=0), axis=1)
    put("seg_prob_rank", rank.astype(np.float32) / max(num_seg - 1, 1))
    pmax = p.max(axis=1, keepdims=True)
    put("seg_prob_video_max", pmax)
    put("seg_prob_video_mean", p.mean(axis=1, keepdims=True))
    put("seg_prob_rel_max", p / np.maximum(pmax, np.float32(1e-12)))
    # classes scoring higher than c on segment s: [K, S]
    put("seg_class_rank", (sp[None, :, :] > p[:, :, None]).sum(axis=2).astype(np.float32))
    put("seg_top_prob", sp.max(axis=1)[None, :])
    put("seg_position", (np.arange(num_seg, dtype=np.float32) / max(num_seg - 1, 1))[None, :])
    put("num_segments", np.float32(num_seg))


def _similarity_features(
    x: F32, se: F32, cls: I64, bank: ClassBank, video_id: str | None, *, max_sim: bool
) -> None:
    """Fill the SIM columns of ``x`` ([K, S, NF]) in place from segment_embeddings [S, D]."""
    u = unit_rows(se)  # [S, D]
    pos_sum, neg_sum, pos_n, neg_n = bank.other_video_sums(cls, video_id)
    u64 = u.astype(np.float64)
    sim_pos = pos_sum @ u64.T  # [K, S]
    sim_neg = neg_sum @ u64.T
    with np.errstate(invalid="ignore", divide="ignore"):
        pos_mean = np.where(pos_n[:, None] > 0, sim_pos / pos_n[:, None], np.nan)
        neg_mean = np.where(neg_n[:, None] > 0, sim_neg / neg_n[:, None], np.nan)
    x[:, :, _COL["sim_pos_sum"]] = sim_pos
    x[:, :, _COL["sim_neg_sum"]] = sim_neg
    x[:, :, _COL["sim_pos_mean"]] = pos_mean
    x[:, :, _COL["sim_neg_mean"]] = neg_mean
    diff = pos_mean - neg_mean  # [K, S]
    x[:, :, _COL["sim_mean_diff"]] = diff
    x[:, :, _COL["sim_mean_diff_prev"]] = np.nan
    x[:, 1:, _COL["sim_mean_diff_prev"]] = diff[:, :-1]
    x[:, :, _COL["sim_mean_diff_next"]] = np.nan
    x[:, :-1, _COL["sim_mean_diff_next"]] = diff[:, 1:]
    x[:, :, _COL["pos_count"]] = pos_n[:, None]
    x[:, :, _COL["neg_count"]] = neg_n[:, None]
    total = pos_n + neg_n
    with np.errstate(invalid="ignore", divide="ignore"):
        x[:, :, _COL["class_pos_rate"]] = np.where(total > 0, pos_n / total, np.nan)[:, None]
    if max_sim:
        pmax, nmax = bank.max_cosine(u, cls, video_id)
        x[:, :, _COL["sim_pos_max"]] = pmax
        x[:, :, _COL["sim_neg_max"]] = nmax
        x[:, :, _COL["sim_max_diff"]] = pmax - nmax
    else:
        for name in ("sim_pos_max", "sim_neg_max", "sim_max_diff"):
            x[:, :, _COL[name]] = np.nan


def similarity_columns(
    x: F32,
    segment_embeddings: npt.ArrayLike,
    classes: npt.ArrayLike,
    bank: ClassBank,
    video_id: str | None,
    *,
    max_sim: bool = True,
) -> None:
    """Recompute, in place, the bank-dependent columns (``sim_*``, ``pos_count``, ``neg_count``,
    ``class_pos_rate``) of ``x`` float32 [K, S, NF] (class-major rows of
    :func:`build_pair_features`) for a new bank; the other columns are left as they are.

    ``segment_embeddings`` float [S, D] may be a window of consecutive segments of the video: the
    columns of a segment read only its own embedding and its two neighbours' (the review store
    re-scores kept segments this way, :mod:`service.review`).
    """
    se = np.asarray(segment_embeddings, dtype=np.float32)
    cls = np.asarray(classes, dtype=np.int64).reshape(-1)
    _similarity_features(x, se, cls, bank, video_id, max_sim=max_sim)


def _check_inputs(vp: F32, sp: F32, se: F32, cls: I64, bank: ClassBank) -> None:
    if vp.ndim != 1:
        raise ValueError(f"video_probs must be [C], got shape {vp.shape}")
    if sp.ndim != 2 or sp.shape[1] != vp.shape[0]:
        raise ValueError(f"segment_probs must be [S, C={vp.shape[0]}], got shape {sp.shape}")
    if se.ndim != 2 or se.shape[0] != sp.shape[0]:
        raise ValueError(f"segment_embeddings must be [S={sp.shape[0]}, D], got shape {se.shape}")
    if se.shape[1] != bank.dim:
        raise ValueError(f"segment_embeddings have D={se.shape[1]}, the bank has D={bank.dim}")
    if vp.shape[0] != bank.num_classes:
        raise ValueError(f"video_probs has C={vp.shape[0]}, the bank has C={bank.num_classes}")
    if cls.size and (cls.min() < 0 or cls.max() >= vp.shape[0]):
        raise ValueError(f"classes must be in [0, {vp.shape[0]}), got {cls.min()}..{cls.max()}")
