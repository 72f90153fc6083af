"""What runs on a Dask worker: the bundle, loaded once per worker process, and the two tasks.

The bundle is loaded (every sha256 checked) by :class:`BundleLoader`, a worker plugin, when it is
registered or when a worker (re)starts, and cached in the process by its path and the sha256 of its
manifest: a task that finds a different manifest at that path fails instead of mixing models.
Scoring uses the runtime only (:class:`service.scorer.Scorer`, the shared feature builder and
:func:`service.bundle.predict_pairs`) with one ONNX Runtime and one XGBoost thread per worker.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from batch.plan import Chunk, read_chunk
from batch.topn import Entries, SegmentTops, VideoTop, in_cg, select
from service.bundle import load_bundle, predict_pairs, sha256_file
from service.features import build_pair_features
from service.scorer import Scorer
from service.yt8m import SEGMENT_FRAMES, Video

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

PAIR_CHUNK_ROWS = 100_000
"""Pair rows scored per ``predict_pairs`` call (as ``ccrl submit`` batches them)."""

_LOCK = threading.Lock()
_SCORERS: dict[tuple[str, str], Scorer] = {}
LOADS: Counter[tuple[str, str]] = Counter()
"""Bundle loads in this process, by (path, manifest sha256): 1 per worker when all is well."""


@dataclass(frozen=True)
class BundleRef:
    """Which bundle a task scores with: its folder and the sha256 of its ``manifest.json``."""

    path: str
    manifest_sha256: str

    @staticmethod
    def of(path: str | os.PathLike[str]) -> BundleRef:
        p = os.path.abspath(os.fspath(path))
        return BundleRef(p, sha256_file(os.path.join(p, "manifest.json")))


def scorer_for(ref: BundleRef) -> Scorer:
    """This process's scorer for ``ref``: loaded and verified on first use, then cached."""
    key = (ref.path, ref.manifest_sha256)
    with _LOCK:
        scorer = _SCORERS.get(key)
        if scorer is None:
            got = sha256_file(os.path.join(ref.path, "manifest.json"))
            if got != ref.manifest_sha256:
                raise RuntimeError(
                    f"{ref.path}: this worker sees another bundle (manifest sha256 {got[:12]}, "
                    f"the job's {ref.manifest_sha256[:12]}); every worker needs the same files"
                )
            bundle = load_bundle(ref.path, verify=True, nthread=1)
            scorer = Scorer(bundle, intra_threads=1, inter_threads=1, providers="cpu")
            _SCORERS[key] = scorer
            LOADS[key] += 1
        return scorer


try:  # the plugin base class only where distributed is installed (workers, the driver)
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - batch without the dask extra
    WorkerPlugin = object  # type: ignore[assignment,misc]


class BundleLoader(WorkerPlugin):  # type: ignore[misc,valid-type]
    """Loads the job's bundle on every worker, also on workers that join or restart later."""

    def __init__(self, ref: BundleRef) -> None:
        self.ref = ref
        self.name = f"ccrl-bundle-{ref.manifest_sha256[:16]}"

    def setup(self, worker: Any) -> None:
        scorer_for(self.ref)


def _stats(ref: BundleRef, t0: float, **extra: Any) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "loads": LOADS[(ref.path, ref.manifest_sha256)],
        "seconds": time.perf_counter() - t0,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "torch_imported": "torch" in sys.modules,
        **extra,
    }


def candidate_outputs(scorer: Scorer, video: Video) -> tuple[F32, F32, F32]:
    """(video_probs [C], segment_probs [S, C], segment_embeddings [S, D]); a video without frames
    gets zero probabilities and no segments (as ``ccrl submit``)."""
    if video.num_frames == 0:
        c = scorer.num_classes
        d = scorer.bundle.bank.dim
        return np.zeros(c, np.float32), np.zeros((0, c), np.float32), np.zeros((0, d), np.float32)
    out = scorer.run_candidate(video.features())
    return out.video_probs, out.segment_probs, out.segment_embeddings


def cg_task(chunk: Chunk, ref: BundleRef, classes: I64, k: int) -> dict[str, Any]:
    """The chunk's top ``k`` videos of every class by video score: {chunk, n, vp [m, R],
    ordinal [m, R], stats}."""
    t0 = time.perf_counter()
    scorer = scorer_for(ref)
    rows = [candidate_outputs(scorer, v)[0][classes] for v in read_chunk(chunk)]
    vp = np.stack(rows).astype(np.float32)
    ords = chunk.ordinal + np.arange(len(rows), dtype=np.int64)
    top = VideoTop.of(vp, ords, k)
    return {
        "chunk": chunk.index,
        "n": len(rows),
        "vp": top.vp,
        "ordinal": top.ordinal,
        "stats": _stats(ref, t0, videos=len(rows)),
    }


class _PairBuffer:
    """Pair rows of several videos, scored ``PAIR_CHUNK_ROWS`` at a time into per-class parts."""

    def __init__(self, scorer: Scorer, tops: SegmentTops, ids: Any) -> None:
        self.scorer, self.tops, self.ids = scorer, tops, ids
        self.xs: list[F32] = []
        self.meta: list[tuple[I64, int, int]] = []  # (class columns [K], ordinal, S) per video
        self.rows = 0
        self.pairs = 0
        self.seconds = 0.0  # in predict_pairs and the per-class selection

    def add(self, x: F32, cols: I64, ordinal: int, num_seg: int) -> None:
        self.xs.append(x)
        self.meta.append((cols, ordinal, num_seg))
        self.rows += x.shape[0]
        if self.rows >= PAIR_CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.xs:
            return
        t = time.perf_counter()
        scores = predict_pairs(self.scorer.booster, np.concatenate(self.xs))
        if np.isnan(scores).any():
            raise ValueError("the CCRL booster returned NaN scores")
        at = 0
        for cols, ordinal, s in self.meta:
            starts = np.arange(s, dtype=np.int64) * SEGMENT_FRAMES
            for j, r in enumerate(cols.tolist()):
                e = Entries(scores[at + j * s : at + (j + 1) * s], np.full(s, ordinal), starts)
                self.tops.add(r, e, self.ids)
            at += len(cols) * s
        self.pairs += self.rows
        self.xs, self.meta, self.rows = [], [], 0
        self.seconds += time.perf_counter() - t


def rank_task(
    chunk: Chunk,
    ref: BundleRef,
    classes: I64,
    cg: tuple[F32, I64] | None,
    top: int,
    orders: tuple[str, ...],
) -> dict[str, Any]:
    """The chunk's partial top lists of every class: {chunk, ids [n], offsets [R + 1], score,
    ordinal, start (the classes' rows back to back), stats}. ``cg``: the per-class thresholds
    (:meth:`VideoTop.thresholds`), or None to rank every segment (no CG)."""
    t0 = time.perf_counter()
    scorer = scorer_for(ref)
    bank = scorer.bundle.bank
    ids: list[str] = []
    tops = SegmentTops(len(classes), top, orders)

    def video_ids(ordinals: I64) -> npt.NDArray[np.str_]:
        return np.asarray(ids, dtype=np.str_)[ordinals - chunk.ordinal]

    buf = _PairBuffer(scorer, tops, video_ids)
    all_cols = np.arange(len(classes), dtype=np.int64)
    t_cand = t_feat = 0.0
    for i, video in enumerate(read_chunk(chunk)):
        ids.append(video.id)
        t = time.perf_counter()
        vp, sp, se = candidate_outputs(scorer, video)
        t_cand += time.perf_counter() - t
        ordinal = chunk.ordinal + i
        cols = all_cols if cg is None else np.flatnonzero(in_cg(vp[classes], ordinal, *cg))
        if sp.shape[0] == 0 or cols.size == 0:
            continue
        t = time.perf_counter()
        pm = build_pair_features(
            vp, sp, se, classes[cols], bank, video.id, max_sim=scorer.bundle.max_sim
        )
        t_feat += time.perf_counter() - t
        buf.add(pm.x, cols, ordinal, int(sp.shape[0]))
    buf.flush()
    per_class = [tops.final(r, video_ids) for r in range(len(classes))]
    return {
        "chunk": chunk.index,
        "ids": np.asarray(ids, dtype=np.str_),
        **pack(per_class),
        "stats": _stats(
            ref,
            t0,
            videos=len(ids),
            pairs=buf.pairs,
            t_candidate=t_cand,
            t_features=t_feat,
            t_gbm=buf.seconds,
        ),
    }


def pack(per_class: list[Entries]) -> dict[str, np.ndarray]:
    """Per-class rows back to back: offsets int64 [R + 1], score, ordinal, start."""
    sizes = [len(e) for e in per_class]
    cat = Entries.concat(per_class) if per_class else Entries.empty()
    return {
        "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "score": cat.score,
        "ordinal": cat.ordinal,
        "start": cat.start,
    }


def unpack(part: dict[str, Any]) -> list[Entries]:
    """Inverse of :func:`pack`."""
    o = part["offsets"]
    return [
        Entries(part["score"][a:b], part["ordinal"][a:b], part["start"][a:b])
        for a, b in zip(o[:-1].tolist(), o[1:].tolist(), strict=True)
    ]


__all__ = ["BundleLoader", "BundleRef", "cg_task", "rank_task", "scorer_for", "select"]
