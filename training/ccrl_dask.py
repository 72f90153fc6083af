"""CCRL's GBM on Dask: ``ccrl train ... --workers N | --scheduler ADDRESS``.

The same protocol and settings as :func:`training.ccrl.train_ccrl` (the grid of
:class:`training.ccrl.CcrlConfig`, early stopping on the 10% holdout videos, refit on every rated
pair), with the work on the workers:

1. the generator's outputs on ``validate/``: one task per chunk of records (``batch.plan``), kept
   on the workers;
2. the bank: each chunk's labelled segment embeddings (:func:`training.ccrl.rated_entries`),
   gathered in reading order into the same bank as the single-node stage builds;
3. the rated pairs' features on the workers (:func:`training.ccrl.rated_pairs`, i.e.
   ``service/features.py``), one partition per chunk, split by holdout video there;
4. ``xgboost.dask.train`` on the partitioned pair matrix for every grid entry, its prediction
   on the holdout partitions for its mAP, and the refit on all partitions.

The rated pairs (a few floats per rated segment) come back to the driver at the end, because the
later stages (the ensemble choice) read them, as they read the single-node stage's.
"""

from __future__ import annotations

import operator
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from service.features import FEATURE_NAMES, FEATURE_TYPES
from training.ccrl import (
    CandidateRunner,
    CcrlConfig,
    CcrlModel,
    PairSet,
    VideoOutputs,
    pairs_map,
    rated_entries,
    rated_pairs,
)

F32 = npt.NDArray[np.float32]

_LOCK = threading.Lock()
_RUNNERS: dict[str, CandidateRunner] = {}


def _runner(graph: str) -> CandidateRunner:
    """This worker process's ONNX Runtime session of ``graph`` (one thread), created once."""
    with _LOCK:
        if graph not in _RUNNERS:
            _RUNNERS[graph] = CandidateRunner(graph, threads=1)
        return _RUNNERS[graph]


def outputs_task(chunk: Any, graph: str) -> list[VideoOutputs]:
    """The generator's outputs (and in-range ratings) of a chunk's videos."""
    from batch.plan import read_chunk

    return [_runner(graph)(v) for v in read_chunk(chunk)]


def pairs_task(outs: list[VideoOutputs], bank: Any, ordinal: int, max_sim: bool) -> PairSet:
    """The chunk's rated pairs (leakage-free features); ``video`` as corpus ordinals."""
    if not any(len(o.rated_class) for o in outs):
        nf = len(FEATURE_NAMES)
        z = np.zeros(0, np.int64)
        return PairSet(np.zeros((0, nf), np.float32), np.zeros(0, np.float32), z, z, z)
    p = rated_pairs(outs, bank, max_sim=max_sim, progress=False)
    p.video = p.video + ordinal
    return p


def split_task(pairs: PairSet, holdout: npt.NDArray[np.bool_], side: str) -> tuple[F32, F32]:
    """(x, y) of the partition's training (``side="train"``) or holdout pairs, or all of them."""
    if side == "all":
        return pairs.x, pairs.y
    hold = holdout[pairs.video]
    keep = hold if side == "holdout" else ~hold
    return pairs.x[keep], pairs.y[keep]


@dataclass
class DaskPairs:
    """The partitioned rated pairs: one future of a :class:`PairSet` per chunk.

    ``held`` keeps the futures the matrices are built from alive as long as this object.
    """

    parts: list[Any]
    holdout: npt.NDArray[np.bool_]
    held: list[Any] = field(default_factory=list)

    def matrix(self, client: Any, side: str) -> tuple[Any, Any]:
        """(a ``DaskDMatrix`` of ``side`` (train | holdout | all), its dask array x), one
        partition per chunk."""
        import dask.array as da
        from xgboost import dask as dxgb

        xy = [client.submit(split_task, p, self.holdout, side, pure=False) for p in self.parts]
        self.held.extend(xy)
        sizes = client.gather([client.submit(_rows, f, pure=False) for f in xy])
        keep = [(f, n) for f, n in zip(xy, sizes, strict=True) if n]
        nf = len(FEATURE_NAMES)
        x = da.concatenate([da.from_delayed(_item(f, 0), (n, nf), np.float32) for f, n in keep])
        y = da.concatenate([da.from_delayed(_item(f, 1), (n,), np.float32) for f, n in keep])
        dm = dxgb.DaskDMatrix(
            client,
            x,
            y,
            feature_names=list(FEATURE_NAMES),
            feature_types=list(FEATURE_TYPES),
            enable_categorical=True,
            missing=np.nan,
        )
        return dm, x


def _rows(xy: tuple[F32, F32]) -> int:
    return len(xy[1])


def _item(fut: Any, i: int) -> Any:
    import dask

    return dask.delayed(operator.getitem)(fut, i)


def build_partitions(
    client: Any,
    graph: Path,
    data: Path,
    num_classes: int,
    holdout: npt.NDArray[np.bool_],
    *,
    max_sim: bool,
    chunk_size: int | None = None,
) -> tuple[Any, DaskPairs, list[Any]]:
    """(the bank, the partitioned rated pairs, the chunks) of ``data`` (the validate/ folder)."""
    from batch.plan import corpus_files, count_records, make_plan
    from service.bank import ClassBank

    files = corpus_files([data])
    plan = make_plan(files, client.gather(client.map(count_records, files, pure=False)), chunk_size)
    if plan.num_videos != len(holdout):
        raise ValueError(f"{data}: {plan.num_videos} videos, the holdout split has {len(holdout)}")
    outs = [client.submit(outputs_task, c, str(graph), pure=False) for c in plan.chunks]
    entries = client.gather([client.submit(rated_entries, o, pure=False) for o in outs])
    emb, cls, lab, vid, start = ([e[i] for e in entries if len(e[1])] for i in range(5))
    if emb:
        bank = ClassBank.from_entries(
            np.concatenate(emb),
            np.concatenate(cls),
            np.concatenate(lab),
            [v for vs in vid for v in vs],
            np.concatenate(start),
            num_classes=num_classes,
        )
    else:
        bank = ClassBank.empty(num_classes, 1)
    bank_f = client.scatter(bank, broadcast=True)
    parts = [
        client.submit(pairs_task, o, bank_f, c.ordinal, max_sim, pure=False)
        for o, c in zip(outs, plan.chunks, strict=True)
    ]
    return bank, DaskPairs(parts, holdout), list(plan.chunks)


def train_ccrl_dask(
    client: Any,
    pairs: DaskPairs,
    holdout_pairs: PairSet,
    holdout_tokens: list[str],
    cfg: CcrlConfig,
    *,
    seed: int = 0,
) -> tuple[xgb.Booster, dict[str, Any], int, list[dict[str, Any]], F32]:
    """Grid search with early stopping on the holdout, then the refit on all pairs.

    Returns (final booster, params, rounds, search, holdout predictions of the chosen model).
    """
    from xgboost import dask as dxgb

    dtr, _ = pairs.matrix(client, "train")
    dho, xho = pairs.matrix(client, "holdout")
    search: list[dict[str, Any]] = []
    best: tuple[float, float, int, dict[str, Any], F32] | None = None
    for choice in cfg.grid:
        params = cfg.params(choice, seed)
        out = dxgb.train(
            client,
            params,
            dtr,
            num_boost_round=cfg.max_rounds,
            evals=[(dho, "holdout")],
            early_stopping_rounds=cfg.early_stopping,
            verbose_eval=False,
        )
        bst = out["booster"]
        rounds = int(bst.best_iteration) + 1
        pred = np.asarray(
            dxgb.inplace_predict(client, bst, xho, iteration_range=(0, rounds)).compute(),
            np.float32,
        )
        m = pairs_map(pred, holdout_pairs.class_ids, holdout_tokens, holdout_pairs.y)
        loss = float(out["history"]["holdout"]["logloss"][rounds - 1])
        search.append({**choice, "best_rounds": rounds, "holdout_logloss": loss, "holdout_map": m})
        if best is None or (m, -loss) > (best[0], best[1]):
            best = (m, -loss, rounds, params, pred)
    assert best is not None
    _, _, rounds, params, pred = best
    dall, _ = pairs.matrix(client, "all")
    final = dxgb.train(client, params, dall, num_boost_round=rounds)["booster"]
    return final, params, rounds, search, pred


def gather_pairs(client: Any, pairs: DaskPairs) -> PairSet:
    """Every partition's rated pairs, concatenated in reading order (as the single-node stage)."""
    ps = [p for p in client.gather(pairs.parts) if len(p)]
    if not ps:
        raise ValueError("no rated (segment, class) pairs to train on (is the split rated?)")
    return PairSet(
        *(
            np.concatenate([getattr(p, f) for p in ps])
            for f in ("x", "y", "video", "class_ids", "segment")
        )
    )


def fit_ccrl_on_dask(
    client: Any,
    graph: Path,
    data: Path,
    num_classes: int,
    holdout: npt.NDArray[np.bool_],
    video_ids: list[str],
    cfg: CcrlConfig,
    *,
    seed: int = 0,
    chunk_size: int | None = None,
) -> tuple[Any, PairSet, list[str], CcrlModel]:
    """The CCRL stage of one generator on Dask: (bank, rated pairs, their tokens, the model)."""
    from service.yt8m import SEGMENT_FRAMES, segment_id

    t0 = time.perf_counter()
    bank, dpairs, _ = build_partitions(
        client, graph, data, num_classes, holdout, max_sim=cfg.max_sim, chunk_size=chunk_size
    )
    pairs = gather_pairs(client, dpairs)
    tokens = [
        segment_id(video_ids[v], s * SEGMENT_FRAMES)
        for v, s in zip(pairs.video.tolist(), pairs.segment.tolist(), strict=True)
    ]
    hold = holdout[pairs.video]
    if hold.all() or not hold.any():
        raise ValueError("the holdout split must leave pairs on both sides")
    ho = pairs.subset(hold)
    ho_tokens = [tokens[i] for i in np.flatnonzero(hold).tolist()]
    booster, params, rounds, search, pred = train_ccrl_dask(
        client, dpairs, ho, ho_tokens, cfg, seed=seed
    )
    holdout_scores = np.full(len(pairs), np.nan, np.float32)
    holdout_scores[hold] = pred
    gain = {k: float(v) for k, v in booster.get_score(importance_type="total_gain").items()}  # type: ignore[arg-type]
    importance = {k: round(v, 3) for k, v in sorted(gain.items(), key=lambda kv: -kv[1])}
    booster.set_param({"nthread": cfg.nthread})
    model = CcrlModel(
        booster, params, rounds, search, holdout_scores, importance, time.perf_counter() - t0
    )
    return bank, pairs, tokens, model
