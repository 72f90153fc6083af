"""Bulk writes of the corpus index into the service's Redis keys.

The keys are :class:`service.stores.redis.RedisIndexStore`'s, under the bundle's namespace
(:func:`service.api.app.bundle_namespace`), so ``GET /classes/{c}/top-segments`` of a service
started on the same bundle and Redis reads what ``ccrl index`` wrote:

- ``index:class:{c}``: ZADD of the class's selected members (pipelined, ``BATCH`` members per
  command), then ZREMRANGEBYRANK to the cap, as the service trims after every write;
- ``index:video:{v}``: the JSON ``{class: [starts]}`` of what video ``v`` wrote, so that the
  service can later replace the video (``POST /localize`` with ``index``).

Every video of the corpus is replaced as the service would replace it: the members listed in its
old ``index:video`` key are removed first. On a namespace that held nothing of these videos the
class sets equal the ones the service builds by indexing each video with the same classes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import redis

from service.stores.redis import RedisBackend, RedisIndexStore

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

BATCH = 10_000
"""Members per ZADD, keys per MGET / pipeline."""


@dataclass(frozen=True)
class ClassList:
    """One class's members to write: video ordinals [M], starts [M], scores float32 [M]."""

    ordinal: I64
    start: I64
    score: F32


def open_index(url: str, prefix: str, namespace: str, cap: int) -> RedisIndexStore:
    """The service's index store on ``url``, with timeouts for bulk pipelines (not 0.25 s)."""
    return RedisIndexStore(RedisBackend(url, prefix=prefix, namespace=namespace, timeout=60.0), cap)


def _remove_old(store: RedisIndexStore, video_ids: Sequence[str]) -> int:
    """Remove what each video wrote before (its ``index:video`` key lists it); returns members."""
    removed = 0
    for a in range(0, len(video_ids), BATCH):
        keys = [store.video_key(v) for v in video_ids[a : a + BATCH]]
        olds = store.backend.call("index", "bulk", lambda r, k=keys: r.mget(k))

        def drop(r: redis.Redis, vids: Sequence[str], olds: Sequence[bytes | None]) -> None:
            nonlocal removed
            pipe = r.pipeline(transaction=False)
            for vid, raw in zip(vids, olds, strict=True):
                if not raw:
                    continue
                for c, starts in json.loads(raw).items():
                    if starts:
                        pipe.zrem(store.class_key(c), *[f"{vid}:{int(s)}" for s in starts])
                        removed += len(starts)
                pipe.delete(store.video_key(vid))
            pipe.execute()

        vids = video_ids[a : a + BATCH]
        store.backend.call("index", "bulk", lambda r, v=vids, o=olds: drop(r, v, o))
    return removed


def _put_class(r: redis.Redis, key: str, members: list[str], scores: list[float], cap: int) -> None:
    pipe = r.pipeline(transaction=False)
    for a in range(0, len(members), BATCH):
        pipe.zadd(key, dict(zip(members[a : a + BATCH], scores[a : a + BATCH], strict=True)))
    pipe.zremrangebyrank(key, 0, -(cap + 1))
    pipe.execute()


def _write_classes(
    store: RedisIndexStore, lists: Mapping[int, ClassList], ids: npt.NDArray[np.str_]
) -> int:
    written = 0
    for c, cl in lists.items():
        key = store.class_key(c)
        members = np.char.add(np.char.add(ids[cl.ordinal], ":"), cl.start.astype(np.str_)).tolist()
        scores = cl.score.astype(np.float64).tolist()
        store.backend.call(
            "index", "bulk", lambda r, k=key, m=members, s=scores: _put_class(r, k, m, s, store.cap)
        )
        written += len(scores)
    return written


def _write_videos(
    store: RedisIndexStore, lists: Mapping[int, ClassList], ids: npt.NDArray[np.str_]
) -> int:
    """``index:video:{v}`` for every video with members: {class: [starts]} (classes ascending)."""
    if not lists:
        return 0
    cls = np.concatenate([np.full(len(cl.ordinal), c, np.int64) for c, cl in lists.items()])
    ords = np.concatenate([cl.ordinal for cl in lists.values()])
    starts = np.concatenate([cl.start for cl in lists.values()])
    order = np.lexsort((starts, cls, ords))
    cls, ords, starts = cls[order], ords[order], starts[order]
    bounds = np.flatnonzero(np.diff(ords)) + 1
    groups = np.split(np.arange(len(ords)), bounds) if len(ords) else []
    payloads: list[tuple[str, str]] = []
    for g in groups:
        per: dict[str, list[int]] = {}
        for c, s in zip(cls[g].tolist(), starts[g].tolist(), strict=True):
            per.setdefault(str(c), []).append(s)
        payloads.append(
            (store.video_key(str(ids[ords[g[0]]])), json.dumps(per, separators=(",", ":")))
        )
    for a in range(0, len(payloads), BATCH):
        batch = payloads[a : a + BATCH]
        store.backend.call("index", "bulk", lambda r, b=batch: r.mset(dict(b)))
    return len(payloads)


def write_index(
    store: RedisIndexStore, lists: Mapping[int, ClassList], ids: npt.NDArray[np.str_]
) -> dict[str, int]:
    """Replace every corpus video (``ids`` [N], by ordinal) with the members of ``lists``; the
    index is then complete again, so a partial mark (Redis lost its data) is cleared."""
    removed = _remove_old(store, ids.tolist())
    members = _write_classes(store, lists, ids)
    videos = _write_videos(store, lists, ids)
    store.epoch.mark_rebuilt()  # service.stores.epoch: /readyz and ccrl_index_partial say complete
    return {"members": members, "videos": videos, "removed": removed}
