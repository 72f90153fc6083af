"""``ccrl index BUNDLE --data PATH...``: score a whole corpus on Dask and write its index.

1. plan: the shards (``service.tfrecord.expand_paths`` order), their record counts (one Dask task
   per shard, cached under ``--resume``), chunks of ``--chunk`` records (default: one per shard);
2. CG (unless ``--no-cg``): one task per chunk runs the candidate model and returns every class's
   top K videos by video score, K = ``training.submit.cg_k(videos, share)`` (the bundle's CG share)
   as ``ccrl submit``; the driver
   merges them into each class's K-th best (score, ordinal): the CG threshold;
3. rank: one task per chunk runs the candidate model again, builds the pairs of each video's CG
   classes (every rated class with ``--no-cg``) with ``service/features.py``, scores them with the
   bundle's booster, and returns each class's partial top ``--top`` (``batch.topn``); the driver
   merges them, never holding the videos x classes score matrix;
4. outputs: the Kaggle CSV (``--out``, ``ccrl submit``'s writer and order) and/or the service's
   Redis index (``--redis-url``, ``batch.redis_index``).

Each worker loads the bundle once (``batch.worker.BundleLoader``). A task whose worker dies is run
again by Dask (``retries`` covers exceptions); every task is a pure function of its chunk, so the
result is the same. With ``--resume DIR`` each finished task is saved (``batch.resume``) and a
rerun does only the rest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from batch.cluster import dask_client
from batch.merge import CgMerger, RankMerger
from batch.plan import Chunk, Plan, corpus_files, count_records, files_fingerprint, make_plan
from batch.resume import ResumeDir
from batch.topn import Entries, tokens_of, top_set
from batch.worker import BundleLoader, BundleRef, cg_task, rank_task

I64 = npt.NDArray[np.int64]
OnTask = Callable[[str, dict[str, Any]], None]


@dataclass
class IndexResult:
    """What a run did.

    Attributes:
        out: the CSV written, or None.
        redis: {members, videos, removed} written to Redis, or None.
        num_videos: videos in the corpus.
        k: CG's videos per class (None without CG).
        tasks: phase -> {"total", "resumed", "run"}.
        task_stats: one dict per task run (pid, loads, seconds, max_rss_kb, videos, pairs, ...).
        seconds: stage -> wall seconds.
    """

    out: Path | None
    redis: dict[str, int] | None
    num_videos: int
    k: int | None
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)
    task_stats: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


class _Phase:
    """Runs one phase's tasks, folding each result in as it completes (saved first)."""

    def __init__(
        self,
        client: Any,
        rd: ResumeDir,
        name: str,
        merger: Any,
        *,
        retries: int,
        progress: bool,
        checkpoint_s: float,
        on_task: OnTask | None,
    ) -> None:
        self.client, self.rd, self.name, self.merger = client, rd, name, merger
        self.retries, self.progress, self.checkpoint_s = retries, progress, checkpoint_s
        self.on_task = on_task
        self.stats: list[dict[str, Any]] = []

    def restore(self) -> int:
        state, done = self.rd.load_state(self.name)
        if state is not None:
            self.merger.load(state, done)
        for _, part in self.rd.parts(self.name, done):
            self.merger.add(part)
        return len(self.merger.done)

    def run(self, fn: Callable[..., dict[str, Any]], chunks: Sequence[Chunk], *args: Any) -> int:
        from distributed import as_completed

        done = set(self.merger.done)
        todo = [c for c in chunks if c.index not in done]
        token = uuid.uuid4().hex[:8]
        futures = [
            self.client.submit(
                fn,
                c,
                *args,
                key=f"ccrl-index-{self.name}-{c.index}-{token}",
                pure=False,
                retries=self.retries,
            )
            for c in todo
        ]
        last = time.monotonic()
        bar = tqdm(total=len(futures), desc=self.name, unit="task", disable=not self.progress)
        with bar:
            for fut in as_completed(futures):
                part = fut.result()
                fut.release()
                if int(part["chunk"]) in done:
                    continue  # a future recomputed after its worker died completes twice
                done.add(int(part["chunk"]))
                stats = part.pop("stats")
                self.stats.append({"phase": self.name, "chunk": part["chunk"], **stats})
                self.rd.save_part(self.name, int(part["chunk"]), part)
                self.merger.add(part)
                if self.rd.enabled and time.monotonic() - last >= self.checkpoint_s:
                    self.rd.save_state(self.name, self.merger.state_arrays(), self.merger.done)
                    last = time.monotonic()
                bar.update(1)
                if self.on_task is not None:
                    self.on_task(self.name, part)
        if self.rd.enabled and todo:
            self.rd.save_state(self.name, self.merger.state_arrays(), self.merger.done)
        return len(todo)


def _plan(client: Any, rd: ResumeDir, files: list[str], chunk_size: int | None) -> Plan:
    counts = rd.counts
    if counts is None:
        counts = client.gather(client.map(count_records, files, pure=False))
        rd.save_counts(counts)
    return make_plan(files, counts, chunk_size)


def _outputs(
    finals: list[Entries], classes: I64, ids: Any, top: int
) -> tuple[dict[int, npt.NDArray[np.str_]], dict[int, Any]]:
    """(class -> CSV tokens best first, class -> Redis ClassList) from the merged lists."""
    from batch.redis_index import ClassList

    csv: dict[int, npt.NDArray[np.str_]] = {}
    red: dict[int, ClassList] = {}
    for r, c in enumerate(classes.tolist()):
        e = finals[r]
        idx = e.csv_order()[:top]
        csv[c] = tokens_of(ids(e.ordinal[idx]), e.start[idx])

        def by_member(t: I64, e: Entries = e) -> I64:
            tok = tokens_of(ids(e.ordinal[t]), e.start[t])
            return np.argsort(tok, kind="stable")[::-1].astype(np.int64)

        sel = e.take(top_set(e.score, top, by_member))
        red[c] = ClassList(sel.ordinal, sel.start, sel.score)
    return csv, red


def _write_csv(out: Path, lists: dict[int, npt.NDArray[np.str_]], top: int) -> Path:
    from training.submission import write_submission

    return write_submission(out, lists, top=top)


def _write_redis(
    url: str, prefix: str, bundle: Any, lists: dict[int, Any], ids: Any, cap: int
) -> dict[str, int]:
    from batch.redis_index import open_index, write_index
    from service.api.app import bundle_namespace

    store = open_index(url, prefix, bundle_namespace(bundle), cap)
    try:
        return write_index(store, lists, ids.ids)
    finally:
        store.close()


def run_index(
    bundle: str | Path,
    data: Sequence[str | Path],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    redis_url: str | None = None,
    redis_prefix: str = "ccrl",
    out: str | Path | None = None,
    top: int = 100_000,
    cg: bool = True,
    resume: str | Path | None = None,
    chunk_size: int | None = None,
    retries: int = 2,
    progress: bool = True,
    checkpoint_s: float = 300.0,
    on_task: OnTask | None = None,
) -> IndexResult:
    """The ``ccrl index`` job (see the module docstring); ``client``: an open Dask client to use.

    Args:
        top: segments kept per class, in the CSV and in each Redis class set (the service's cap).
        chunk_size: records per task (None: one task per shard).
        retries: extra tries of a task that raised (a dead worker's tasks are rerun by Dask).
        checkpoint_s: with ``resume``, fold the saved parts into the merged state this often.
        on_task: called with (phase, part) after each task is folded in (tests, monitoring).
    """
    from training.submit import bundle_cg_share, cg_k

    t0 = time.perf_counter()
    if top < 1:
        raise ValueError(f"--top must be >= 1, got {top}")
    if out is None and not redis_url:
        raise ValueError("nothing to write: give --out SUB.csv and/or --redis-url URL")
    from service.bundle import load_bundle

    b = load_bundle(bundle, verify=True)
    cg = cg and bundle_cg_share(b) < 1.0  # a bundle whose holdout chose no CG ranks every class
    classes = np.asarray(b.rated_classes, np.int64)
    ref = BundleRef.of(bundle)
    files = corpus_files(data)
    job = {
        "bundle": ref.manifest_sha256,
        "files": files,
        "files_sha256": files_fingerprint(files),
        "chunk_size": int(chunk_size or 0),
        "cg": bool(cg),
        "top": int(top),
        "classes": classes.tolist(),
    }
    rd = ResumeDir(resume, job)
    res = IndexResult(None, None, 0, None)
    opts = {
        "retries": retries,
        "progress": progress,
        "checkpoint_s": checkpoint_s,
        "on_task": on_task,
    }
    with dask_client(workers, scheduler, client=client) as c:
        plan = _plan(c, rd, files, chunk_size)
        res.num_videos = plan.num_videos
        if plan.num_videos == 0:
            raise ValueError(f"no videos in {', '.join(map(str, data))}")
        c.register_plugin(BundleLoader(ref))
        res.seconds["plan"] = round(time.perf_counter() - t0, 2)
        thresholds = None
        if cg:
            res.k = cg_k(plan.num_videos, bundle_cg_share(b))
            ph = _Phase(c, rd, "cg", CgMerger(res.k, len(classes)), **opts)
            resumed = ph.restore()
            ran = ph.run(cg_task, plan.chunks, ref, classes, res.k)
            res.tasks["cg"] = {"total": len(plan.chunks), "resumed": resumed, "run": ran}
            res.task_stats += ph.stats
            thresholds = ph.merger.consolidate().thresholds()
            res.seconds["cg"] = round(time.perf_counter() - t0 - sum(res.seconds.values()), 2)
        rank = RankMerger(plan, len(classes), top)
        ph = _Phase(c, rd, "rank", rank, **opts)
        resumed = ph.restore()
        ran = ph.run(rank_task, plan.chunks, ref, classes, thresholds, top, ("csv", "redis"))
        res.tasks["rank"] = {"total": len(plan.chunks), "resumed": resumed, "run": ran}
        res.task_stats += ph.stats
        res.seconds["rank"] = round(time.perf_counter() - t0 - sum(res.seconds.values()), 2)
    csv, red = _outputs(rank.finals(), classes, rank.ids, top)
    if out is not None:
        res.out = _write_csv(Path(out), csv, top)
    if redis_url:
        res.redis = _write_redis(redis_url, redis_prefix, b, red, rank.ids, top)
    res.seconds["write"] = round(time.perf_counter() - t0 - sum(res.seconds.values()), 2)
    res.seconds["total"] = round(time.perf_counter() - t0, 2)
    return res


def summary(res: IndexResult) -> str:
    """One line for the command's output."""
    done = ", ".join(
        f"{p} {t['run']} run + {t['resumed']} resumed of {t['total']}" for p, t in res.tasks.items()
    )
    where = [str(res.out)] if res.out else []
    if res.redis:
        where.append(f"redis {res.redis['members']} members, {res.redis['videos']} video keys")
    cg = f"CG K={res.k} videos/class" if res.k else "no CG"
    return (
        f"{' + '.join(where)}: {res.num_videos} videos, {cg}; tasks: {done}; "
        f"{res.seconds.get('total', 0):.1f} s"
    )
