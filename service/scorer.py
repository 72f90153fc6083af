"""The scorer: one video's frames in, ranked segments per class out. No web code here.

The pipeline of one request (docs/architecture.md, "A /localize request"):

1. the candidate model, one ONNX Runtime call (:mod:`service.candidate`, the same call as
   training's): ``frames [F, 1152]`` -> ``video_probs [C]``, ``segment_probs [S, C]``,
   ``segment_embeddings [S, D]`` (S = F // 5);
2. the candidate classes: the caller's list, or the top ``max_classes`` classes by video score
   (at least ``min_video_score``) among the classes the service can localize;
3. the pair matrix ``[S * K, NF]`` from the shared feature builder (:mod:`service.features`);
4. one ``inplace_predict`` of the CCRL booster over the whole matrix (:func:`predict_pairs`);
5. the ranked segments of every class, best first.

Only numpy, onnxruntime and xgboost; the same feature builder and scoring call as ``training``, so
the service's scores equal the offline pipeline's for the same video and bundle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from service import candidate
from service.bank import ClassBank
from service.bundle import Bundle, predict_pairs
from service.candidate import CandidateOutputs
from service.features import PairMatrix, build_pair_features
from service.finite import check_finite, check_pair_matrix
from service.yt8m import SEGMENT_FRAMES

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class UnknownClassError(LookupError):
    """Class ids that are not in the bundle's vocabulary."""

    def __init__(self, class_ids: Sequence[int], num_classes: int, field: str = "classes") -> None:
        ids = ", ".join(str(c) for c in list(class_ids)[:10])
        more = "" if len(class_ids) <= 10 else f" (+{len(class_ids) - 10} more)"
        super().__init__(
            f"{field}: unknown class id(s) {ids}{more}; the vocabulary has ids 0..{num_classes - 1}"
        )
        self.class_ids = list(class_ids)
        self.field = field


@dataclass(frozen=True)
class ClassSegments:
    """The segments of one class, best first.

    Attributes:
        class_id: the vocabulary id.
        name: the vocabulary name.
        video_score: ``video_probs[class_id]``.
        starts: int64 [n] segment start frames, best first (n <= max_segments).
        scores: float32 [n] the CCRL relevance of each of them.
    """

    class_id: int
    name: str
    video_score: float
    starts: I64
    scores: F32


@dataclass
class Localization:
    """The result of scoring one video.

    Attributes:
        classes: one entry per scored class, in candidate order (best video score first, or the
            caller's order).
        class_ids: int64 [K] the scored classes.
        scores: float32 [K, S] every pair's score (row k = class ``class_ids[k]``), for the index.
        timings: stage name -> seconds (``candidate``, ``bank``, ``features``, ``gbm``, ``rank``).
        num_pairs: S * K.
        pairs: the pair matrix the scores came from (``[S * K, NF]``, class-major), kept by
            reference for the evidence (:mod:`service.explain`) and the review store.
        segment_embeddings: float32 [S, D], the candidate model's segment embeddings.
    """

    classes: list[ClassSegments]
    class_ids: I64
    scores: F32
    timings: dict[str, float] = field(default_factory=dict)
    num_pairs: int = 0
    pairs: PairMatrix | None = None
    segment_embeddings: F32 | None = None

    @property
    def num_segments(self) -> int:
        return int(self.scores.shape[1]) if self.scores.ndim == 2 else 0

    def index_entries(self) -> dict[int, tuple[I64, F32]]:
        """class id -> (starts int64 [S], scores float32 [S]) of every segment, for the index."""
        starts = np.arange(self.num_segments, dtype=np.int64) * SEGMENT_FRAMES
        return {int(c): (starts, self.scores[k]) for k, c in enumerate(self.class_ids.tolist())}


class Scorer:
    """Scores videos with one bundle: an ONNX Runtime session and the CCRL booster.

    Thread-safe: ONNX Runtime sessions and ``inplace_predict`` may be called concurrently.
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        intra_threads: int = 1,
        inter_threads: int = 1,
        providers: str = "auto",
        xgb_nthread: int = 1,
        spinning: bool = False,
    ) -> None:
        self.bundle = bundle
        self.session = candidate.open_session(
            bundle.candidate_path,
            intra_threads,
            providers,
            inter_threads=inter_threads,
            spinning=spinning,
        )
        self.providers: list[str] = list(self.session.get_providers())
        self.booster = bundle.booster
        self.booster.set_param({"nthread": int(xgb_nthread)})
        self.num_classes = bundle.num_classes
        names = bundle.class_names
        self.names: list[str] = [names.get(c, str(c)) for c in range(self.num_classes)]
        rated = np.zeros(self.num_classes, dtype=bool)
        rc = bundle.rated_classes
        rated[rc[(rc >= 0) & (rc < self.num_classes)]] = True
        self.rated: npt.NDArray[np.bool_] = rated
        self.max_sim = bundle.max_sim

    # ------------------------------------------------------------------ stages
    def run_candidate(self, frames: F32) -> CandidateOutputs:
        """One ONNX Runtime call on float32 [F, 1152] dequantized frames (:func:`candidate.run`);
        a non-finite output is a 422 here, never a NaN in the features, the bank or the index."""
        out = candidate.run(self.session, frames)
        for name in ("video_probs", "segment_probs", "segment_embeddings"):
            check_finite(name, getattr(out, name))
        return out

    def localizable(self, bank: ClassBank) -> npt.NDArray[np.bool_]:
        """bool [C]: classes the GBM was trained on, plus any class with a labelled positive."""
        return self.rated | (bank.pos_count > 0)

    def check_classes(self, classes: Sequence[int], field: str = "classes") -> I64:
        """The caller's classes as int64 [K] (duplicates dropped, order kept); unknown ids raise."""
        arr = np.asarray(list(classes), dtype=np.int64).reshape(-1)
        bad = arr[(arr < 0) | (arr >= self.num_classes)]
        if bad.size:
            raise UnknownClassError(bad.tolist(), self.num_classes, field)
        _, first = np.unique(arr, return_index=True)
        return arr[np.sort(first)]

    def candidate_classes(
        self,
        video_probs: F32,
        bank: ClassBank,
        *,
        max_classes: int,
        min_video_score: float = 0.0,
    ) -> I64:
        """The top ``max_classes`` localizable classes by video score (>= ``min_video_score``)."""
        eligible = self.localizable(bank) & (video_probs >= min_video_score)
        ids = np.flatnonzero(eligible)
        order = np.argsort(-video_probs[ids], kind="stable")[:max_classes]
        return ids[order].astype(np.int64)

    def embed(self, frames: F32) -> F32:
        """Segment embeddings of a video: float32 [S, D] (the candidate model's encoding)."""
        return self.run_candidate(frames).segment_embeddings

    # ------------------------------------------------------------------ whole pipeline
    def localize(
        self,
        frames: F32,
        bank: ClassBank,
        *,
        video_id: str | None = None,
        classes: Sequence[int] | None = None,
        max_classes: int = 20,
        max_segments: int = 60,
        min_video_score: float = 0.0,
    ) -> Localization:
        """Score one video: float32 [F, 1152] frames -> ranked segments of each candidate class.

        Args:
            frames: dequantized frames, rgb then audio.
            bank: the labelled-embedding bank snapshot to compute the similarity features with.
            video_id: the video's id; its own bank entries are excluded from the similarities.
            classes: score these classes (any vocabulary id) instead of the candidates.
            max_classes: how many candidate classes (ignored with ``classes``).
            max_segments: segments kept per class in the answer (the index gets them all).
            min_video_score: candidate classes need at least this video score.
        """
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        cand = self.run_candidate(frames)
        t1 = time.perf_counter()
        timings["candidate"] = t1 - t0
        if classes is not None:
            cls = self.check_classes(classes)
        else:
            cls = self.candidate_classes(
                cand.video_probs, bank, max_classes=max_classes, min_video_score=min_video_score
            )
        pairs = build_pair_features(
            cand.video_probs,
            cand.segment_probs,
            cand.segment_embeddings,
            cls,
            bank,
            video_id,
            max_sim=self.max_sim,
        )
        t2 = time.perf_counter()
        timings["features"] = t2 - t1
        check_pair_matrix(pairs.x)  # a clear 422 rather than XGBoost scoring a broken row
        flat = predict_pairs(self.booster, pairs)
        check_finite("scores", flat)
        t3 = time.perf_counter()
        timings["gbm"] = t3 - t2
        num_seg = int(cand.segment_probs.shape[0])
        scores = flat.reshape(len(cls), num_seg)
        result = self._rank(cls, scores, cand.video_probs, max_segments)
        timings["rank"] = time.perf_counter() - t3
        return Localization(
            result,
            cls,
            scores,
            timings,
            num_pairs=int(flat.shape[0]),
            pairs=pairs,
            segment_embeddings=cand.segment_embeddings,
        )

    def _rank(
        self, cls: I64, scores: F32, video_probs: F32, max_segments: int
    ) -> list[ClassSegments]:
        """Best-first segments per class (ties: earlier segment first)."""
        if scores.size == 0:
            return [
                ClassSegments(
                    int(c),
                    self.names[int(c)],
                    float(video_probs[int(c)]),
                    np.zeros(0, np.int64),
                    np.zeros(0, np.float32),
                )
                for c in cls.tolist()
            ]
        order = np.argsort(-scores, axis=1, kind="stable")[:, :max_segments]  # [K, n]
        top = np.take_along_axis(scores, order, axis=1)
        starts = order.astype(np.int64) * SEGMENT_FRAMES
        vscores = video_probs[cls].tolist()
        return [
            ClassSegments(int(c), self.names[int(c)], float(vscores[k]), starts[k], top[k])
            for k, c in enumerate(cls.tolist())
        ]

    def describe(self) -> dict[str, Any]:
        """Facts for logs and ``/readyz``: providers and model facts."""
        return {
            "providers": self.providers,
            "num_classes": self.num_classes,
            "rated_classes": int(self.rated.sum()),
            "max_sim": self.max_sim,
        }
