"""CCRL's features and GBM on Dask: ``ccrl train ... --workers N | --scheduler ADDRESS``.

The same feature sets, the same choices and the same rules as one process
(:mod:`training.stages.ccrl_select`: the generator and the similarity-feature embedding, then the
objective, parameters and rounds of the GBM, all on cross-fitted holdout scores), with the work on
the workers:

1. the generator's outputs on ``validate/``: one task per chunk of records (``batch.plan``), kept
   on the workers, with the segments' mean frames as a second embedding for the generators whose
   own embedding is not mean frames (:func:`training.stages.ccrl_select.embeddings_of`);
2. for every embedding, the bank: each chunk's labelled segment embeddings
   (:func:`training.ccrl.rated_entries`), gathered in reading order into the same bank as the
   one-process stage builds, and broadcast back;
3. the rated pairs' features on the workers (:func:`training.ccrl.rated_pairs`, i.e.
   ``service/features.py``), one partition per chunk;
4. every booster of the selection (each fold of each candidate, and the refit on all pairs) with
   ``xgboost.dask.train`` (:class:`DaskFitter`): the pairs sorted by class and cut at class
   boundaries into one part per worker, so that a query group of a ranking objective (``qid``: the
   class) is never split between workers.

The outputs and the rated pairs (a few floats per rated segment) come back to the driver, because
the choices (the metric on the cross-fitted scores) and the later stages (candidate generation,
the ensemble, the new classes) read them, as they read the one-process stage's.

Parity with one process: the features and the banks are the same arrays; the boosters are not
bit-identical, because distributed ``hist`` training merges per-worker quantile sketches (other
bin cut points) and each worker draws its own ``subsample`` / ``colsample`` rows. The choices and
the record are made by the same code; the cross-fitted holdout mAPs are close, not equal.
"""

from __future__ import annotations

import itertools
import logging
import operator
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from service.features import FEATURE_NAMES, FEATURE_TYPES
from training.ccrl import CandidateRunner, PairSet, VideoOutputs, rated_entries, rated_pairs
from training.crossfit import is_ranking
from training.stages.ccrl_select import (
    FeatureSet,
    embeddings_of,
    own_embedding,
    pair_tokens,
    segment_means,
)

if TYPE_CHECKING:
    from training.stages.run import TrainRun
    from training.stages.validate import Validate

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

log = logging.getLogger(__name__)

TRAIN_ATTEMPTS = 3
"""Tries of one ``xgboost.dask.train``: its workers' collective can fail on a socket (a worker
paused or slow to connect: "Connect protocol failed", "recv Interrupted system call"); a retry
trains the same booster (the same rows, parameters and seed)."""

_LOCK = threading.Lock()
_RUNNERS: dict[str, CandidateRunner] = {}


def _runner(graph: str) -> CandidateRunner:
    """This worker process's ONNX Runtime session of ``graph`` (one thread), created once."""
    with _LOCK:
        if graph not in _RUNNERS:
            _RUNNERS[graph] = CandidateRunner(graph, threads=1)
        return _RUNNERS[graph]


def outputs_task(
    chunk: Any, graph: str, embeddings: tuple[str, ...], own: str
) -> dict[str, list[VideoOutputs]]:
    """The generator's outputs (and in-range ratings) of a chunk's videos, per embedding: its own
    (``own``), and ``frames`` (the segments' mean frames) when asked for and not its own."""
    from dataclasses import replace

    from batch.plan import read_chunk

    out: dict[str, list[VideoOutputs]] = {e: [] for e in embeddings}
    for v in read_chunk(chunk):
        o = _runner(graph)(v)
        for e in embeddings:
            out[e].append(o if e == own else replace(o, segment_embeddings=segment_means(v)))
    return out


def pairs_task(outs: list[VideoOutputs], bank: Any, ordinal: int, max_sim: bool) -> PairSet:
    """The chunk's rated pairs (leakage-free features); ``video`` as corpus ordinals."""
    if not any(len(o.rated_class) for o in outs):
        nf = len(FEATURE_NAMES)
        z = np.zeros(0, np.int64)
        return PairSet(np.zeros((0, nf), np.float32), np.zeros(0, np.float32), z, z, z)
    p = rated_pairs(outs, bank, max_sim=max_sim, progress=False)
    p.video = p.video + ordinal
    return p


def _bank(client: Any, outs: list[Any], num_classes: int) -> Any:
    """The bank of the labelled segments of every chunk's outputs (``outs``: futures)."""
    from service.bank import ClassBank

    entries = client.gather([client.submit(rated_entries, o, pure=False) for o in outs])
    emb, cls, lab, vid, start = ([e[i] for e in entries if len(e[1])] for i in range(5))
    if not emb:
        return ClassBank.empty(num_classes, 1)
    return ClassBank.from_entries(
        np.concatenate(emb),
        np.concatenate(cls),
        np.concatenate(lab),
        [v for vs in vid for v in vs],
        np.concatenate(start),
        num_classes=num_classes,
    )


def gather_pairs(client: Any, parts: list[Any]) -> PairSet:
    """Every partition's rated pairs, concatenated in reading order (as the one-process stage)."""
    ps = [p for p in client.gather(parts) if len(p)]
    if not ps:
        raise ValueError("no rated (segment, class) pairs to train on (is the split rated?)")
    return PairSet(
        *(
            np.concatenate([getattr(p, f) for p in ps])
            for f in ("x", "y", "video", "class_ids", "segment")
        )
    )


def dask_feature_sets(
    client: Any,
    run: TrainRun,
    name: str,
    graph: Path,
    val: Validate,
    num_classes: int,
    *,
    chunk_size: int | None = None,
) -> list[FeatureSet]:
    """The (unscored) feature sets of generator ``name`` built on the workers from
    ``run.data / "validate"``: the same as :func:`training.stages.ccrl_select.generator_features`
    builds in one process (same order of videos, banks and pairs)."""
    from batch.plan import corpus_files, count_records, make_plan

    data = run.data / "validate"
    files = corpus_files([data])
    plan = make_plan(files, client.gather(client.map(count_records, files, pure=False)), chunk_size)
    if plan.num_videos != val.num_videos:
        raise ValueError(
            f"{data}: {plan.num_videos} videos, the holdout split has {val.num_videos}"
        )
    embeddings, own = embeddings_of(name), own_embedding(name)
    by_chunk = [
        client.submit(outputs_task, c, str(graph), embeddings, own, pure=False) for c in plan.chunks
    ]
    sets = []
    for e in embeddings:
        outs_f = [client.submit(operator.getitem, f, e, pure=False) for f in by_chunk]
        bank = _bank(client, outs_f, num_classes)
        bank_f = client.scatter(bank, broadcast=True)
        parts = [
            client.submit(pairs_task, o, bank_f, c.ordinal, run.ccrl.max_sim, pure=False)
            for o, c in zip(outs_f, plan.chunks, strict=True)
        ]
        pairs = gather_pairs(client, parts)
        outs = [o for chunk in client.gather(outs_f) for o in chunk]
        ids = [o.id for o in outs]
        if val.videos and ids != [v.id for v in val.videos]:
            raise ValueError(f"{data}: the workers read the videos in another order")
        sets.append(FeatureSet(name, e, graph, outs, bank, pairs, pair_tokens(ids, pairs)))
    return sets


def class_parts(class_ids: I64, parts: int) -> list[tuple[int, int]]:
    """``parts`` (or fewer) contiguous row ranges of class-sorted rows, cut only where the class
    changes, each near ``len / parts`` rows."""
    n = len(class_ids)
    starts = np.flatnonzero(np.r_[True, class_ids[1:] != class_ids[:-1]]) if n else np.zeros(0)
    cuts = [0]
    for k in range(1, parts):
        target = n * k / parts
        c = int(starts[np.argmin(np.abs(starts - target))]) if len(starts) else 0
        if c > cuts[-1]:
            cuts.append(c)
    cuts.append(n)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def ranked_workers(client: Any) -> list[str]:
    """The workers' addresses in the order of their ``xgboost.dask`` ranks (xgboost ranks the
    workers by the task id ``[xgboost.dask-NAME]:ADDRESS`` as a string)."""
    info = client.scheduler_info()["workers"]
    if not info:
        raise RuntimeError("the Dask cluster has no workers")
    return sorted(info, key=lambda a: f"[xgboost.dask-{info[a].get('name')}]:{a}")


def _take(part: tuple[F32, F32, I64], keep: npt.NDArray[np.bool_]) -> tuple[F32, F32, I64]:
    return part[0][keep], part[1][keep], part[2][keep]


class DaskFitter:
    """The :data:`training.crossfit.Fitter` of a Dask cluster: ``xgboost.dask.train`` on the
    selected rows of the rated pairs.

    The pairs are sorted by class (stable), cut at class boundaries into one part per worker
    (:func:`class_parts`) and scattered once, part i to the worker of xgboost rank i
    (:func:`ranked_workers`: the same cluster trains the same boosters run after run); a fit
    selects its rows on the workers and trains a ``DaskDMatrix`` of them, with ``qid`` = the
    class for a ranking objective (each part is sorted by class and no class spans two parts:
    every query group lives on one worker, whole).
    """

    def __init__(self, client: Any, pairs: PairSet, parts: int | None = None) -> None:
        self.client = client
        n = len(pairs)
        order = np.argsort(pairs.class_ids, kind="stable")
        self.pos = np.empty(n, np.int64)
        self.pos[order] = np.arange(n)  # input row -> its position in the class-sorted order
        cls = pairs.class_ids[order]
        self.workers = ranked_workers(client)
        self.ranges = class_parts(cls, parts or len(self.workers))
        x, y = pairs.x[order], pairs.y[order]
        self.parts = [  # a list of one (x, y, class) tuple: scatter sends it as one piece
            client.scatter([(x[a:b], y[a:b], cls[a:b])], workers=[self._worker(i)], hash=False)[0]
            for i, (a, b) in enumerate(self.ranges)
        ]
        self.n = n

    def _worker(self, part: int) -> str:
        return self.workers[part % len(self.workers)]

    def __call__(self, rows: I64, params: dict[str, Any], rounds: int) -> xgb.Booster:
        import dask
        import dask.array as da
        from xgboost import dask as dxgb

        keep = np.zeros(self.n, bool)
        keep[self.pos[rows]] = True
        nf = len(FEATURE_NAMES)
        xs, ys, qs, held = [], [], [], []
        for i, ((a, b), part) in enumerate(zip(self.ranges, self.parts, strict=True)):
            m = keep[a:b]
            n = int(m.sum())
            if not n:
                continue
            sub = self.client.submit(_take, part, m, workers=[self._worker(i)], pure=False)
            held.append(sub)
            get = dask.delayed(operator.getitem)
            xs.append(da.from_delayed(get(sub, 0), (n, nf), np.float32))
            ys.append(da.from_delayed(get(sub, 1), (n,), np.float32))
            qs.append(da.from_delayed(get(sub, 2), (n,), np.int64))
        ranking = is_ranking(str(params["objective"]))
        dm = dxgb.DaskDMatrix(
            self.client,
            da.concatenate(xs),
            da.concatenate(ys),
            qid=da.concatenate(qs) if ranking else None,
            feature_names=list(FEATURE_NAMES),
            feature_types=list(FEATURE_TYPES),
            enable_categorical=True,
            missing=np.nan,
        )
        for attempt in range(1, TRAIN_ATTEMPTS + 1):
            try:
                out = dxgb.train(self.client, params, dm, num_boost_round=int(rounds))
                break
            except xgb.core.XGBoostError as e:  # the workers' collective (sockets), not the data
                if attempt == TRAIN_ATTEMPTS:
                    raise
                log.warning("xgboost.dask.train failed (%s); attempt %d", str(e)[:200], attempt + 1)
        del held
        booster: xgb.Booster = out["booster"]
        return booster
