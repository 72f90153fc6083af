"""Redis: the connection every store shares, and the corpus index shared by every replica.

Keys live under ``{prefix}:{namespace}:`` where the namespace names the bundle (its version and the
sha256 of its bank), so two bundles never mix banks or scores:

- ``index:class:{c}`` (sorted set of ``"{video}:{start}"`` by score, capped),
  ``index:video:{v}`` (JSON ``{class: [starts]}``: what to remove when ``v`` is re-scored);
- ``epoch`` (a token created once) and ``index:lost`` (set when the epoch vanished: Redis lost its
  data and the index is partial until rebuilt), see :mod:`service.stores.epoch`.

The bank's per-class keys are in :mod:`service.stores.redis_bank`. Redis calls use short timeouts
and no retries; after a failure the store answers :class:`StoreUnavailable` at once for
``retry_interval`` seconds (no per-request timeout), then tries again: the service recovers by
itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from service.stores.base import (
    F32,
    I64,
    IndexEntry,
    IndexState,
    IndexStore,
    StoreHealth,
    StoreListener,
    StoreUnavailable,
    VideoExists,
)
from service.stores.epoch import EpochWatch
from service.yt8m import parse_segment_id, segment_id

T = TypeVar("T")


# ---------------------------------------------------------------------------- connection
class RedisBackend:
    """One Redis client with short timeouts, no retries, and a shared up/down state.

    ``call`` runs one operation; a connection failure marks the backend down (the degraded mode)
    and for ``retry_interval`` seconds later calls fail fast without touching the network.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ccrl",
        namespace: str = "default",
        timeout: float = 0.25,
        retry_interval: float = 1.0,
        listener: StoreListener | None = None,
    ) -> None:
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=30,
        )
        self.url = url
        self.timeout = timeout
        self.base = f"{prefix}:{namespace}"
        self.retry_interval = retry_interval
        self.listener = listener or StoreListener()
        self._up = True
        self._next_try = 0.0
        self._reason = ""
        self._lock = threading.Lock()

    def key(self, *parts: object) -> str:
        return ":".join([self.base, *(str(p) for p in parts)])

    @property
    def up(self) -> bool:
        return self._up

    def call(self, store: str, op: str, fn: Callable[[redis.Redis], T]) -> T:
        """Run ``fn(client)``; StoreUnavailable when Redis is down or the call fails."""
        if not self._up and time.monotonic() < self._next_try:
            self.listener.store_error(store, op)  # refused without a network round trip
            raise StoreUnavailable(store, op, f"redis unreachable ({self._reason})")
        try:
            out = fn(self.client)
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            self._mark_down(store, op, e)
            raise StoreUnavailable(store, op, f"redis unreachable ({e})") from None
        except RedisError as e:
            self.listener.store_error(store, op)
            raise StoreUnavailable(store, op, f"redis error ({e})") from None
        self._mark_up()
        return out

    def _mark_down(self, store: str, op: str, e: BaseException) -> None:
        self.listener.store_error(store, op)
        with self._lock:
            was_up = self._up
            self._up = False
            self._reason = str(e) or type(e).__name__
            self._next_try = time.monotonic() + self.retry_interval
        if was_up:
            self.listener.degraded(True)

    def _mark_up(self) -> None:
        if self._up:
            return
        with self._lock:
            was_down = not self._up
            self._up = True
        if was_down:
            self.listener.degraded(False)

    def health(self) -> StoreHealth:
        try:
            self.call("index", "ping", lambda r: r.ping())
        except StoreUnavailable as e:
            return StoreHealth("redis", False, e.reason)
        return StoreHealth("redis", True, self.url.split("@")[-1])

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------------- index
class RedisIndexStore(IndexStore):
    """The corpus index in Redis: one capped sorted set per class."""

    kind = "redis"

    def __init__(self, backend: RedisBackend, cap: int = 100_000) -> None:
        if cap < 1:
            raise ValueError(f"index cap must be >= 1, got {cap}")
        self.backend = backend
        self.cap = cap
        self.epoch = EpochWatch(backend, listener=backend.listener)

    def state(self) -> IndexState:
        """``partial`` once Redis lost its data (the epoch key, :mod:`service.stores.epoch`)."""
        return self.epoch.state()

    def class_key(self, c: int | str) -> str:
        """The sorted set of class ``c`` (also written in bulk by ``ccrl index``)."""
        return self.backend.key("index", "class", c)

    def video_key(self, video_id: str) -> str:
        """The JSON ``{class: [starts]}`` of what video ``video_id`` wrote into the class sets."""
        return self.backend.key("index", "video", video_id)

    _class_key = class_key

    def put_video(
        self, video_id: str, entries: Mapping[int, tuple[I64, F32]], *, overwrite: bool = True
    ) -> int:
        self.epoch.state()  # at most one check a second: notices a Redis that came back empty
        kv = self.video_key(video_id)
        new: dict[str, list[int]] = {}
        members: dict[int, dict[str, float]] = {}
        for c, (starts, scores) in entries.items():
            st = [int(s) for s in starts.tolist()]
            new[str(int(c))] = st
            members[int(c)] = {
                segment_id(video_id, s): float(v) for s, v in zip(st, scores.tolist(), strict=True)
            }
        written = sum(len(m) for m in members.values())
        payload = json.dumps(new, separators=(",", ":"))

        def replace(r: redis.Redis) -> int:
            with r.pipeline(transaction=True) as pipe:
                for _ in range(3):
                    try:
                        pipe.watch(  # type: ignore[no-untyped-call]
                            kv
                        )
                        old_raw = pipe.get(kv)
                        if old_raw is not None and not overwrite:
                            raise VideoExists(video_id)
                        old: dict[str, list[int]] = json.loads(old_raw) if old_raw else {}
                        pipe.multi()
                        for oc, old_starts in old.items():
                            if old_starts:
                                pipe.zrem(
                                    self._class_key(oc),
                                    *[segment_id(video_id, s) for s in old_starts],
                                )
                        for c, m in members.items():
                            if m:
                                key = self._class_key(c)
                                pipe.zadd(key, m)
                                pipe.zremrangebyrank(key, 0, -(self.cap + 1))
                        pipe.set(kv, payload)
                        pipe.execute()
                        return written
                    except WatchError:
                        continue
            raise StoreUnavailable("index", "put", f"video {video_id!r} is being re-scored")

        return self.backend.call("index", "put", replace)

    def has_video(self, video_id: str) -> bool:
        kv = self.video_key(video_id)
        return bool(self.backend.call("index", "has", lambda r: r.exists(kv)))

    def top(self, class_id: int, limit: int, offset: int = 0) -> tuple[int, list[IndexEntry]]:
        key = self._class_key(class_id)

        def read(r: redis.Redis) -> list[Any]:
            pipe = r.pipeline(transaction=True)
            pipe.zcard(key)
            pipe.zrange(key, offset, offset + limit - 1, desc=True, withscores=True)
            return pipe.execute()

        total, rows = self.backend.call("index", "top", read)
        out = []
        for member, score in rows:
            vid, start = parse_segment_id(member.decode())
            out.append(IndexEntry(vid, start, float(score)))
        return int(total), out

    def rescore(self, class_id: int, entries: Sequence[IndexEntry]) -> int:
        mapping = {segment_id(e.video_id, e.start): float(e.score) for e in entries}
        if not mapping:
            return 0
        key = self._class_key(class_id)
        return int(
            self.backend.call("index", "rescore", lambda r: r.zadd(key, mapping, xx=True, ch=True))
        )

    def health(self) -> StoreHealth:
        return self.backend.health()

    def close(self) -> None:
        self.backend.close()
