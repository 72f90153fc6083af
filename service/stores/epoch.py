"""Telling that Redis lost its data: the epoch key, and the index state it leads to.

A Redis restarted without persistence (or flushed, or failed over to an empty replica) comes back
empty: the bank is re-seeded from the bundle, but the corpus index is simply gone, and nothing in
the index itself says so (an empty class looks like a class nobody indexed yet). So every
namespace holds an **epoch**, ``{prefix}:{namespace}:epoch``: a random token, created once (``SET
NX``) by the first replica that finds it missing. Redis never loses one key without the others, so
a replica that saw an epoch and then finds it missing, or finds another one, knows that Redis lost
its data while it was running. It then writes ``{prefix}:{namespace}:index:lost`` (JSON ``{since,
epoch}``, ``SET NX``: the first detection wins), which every replica reads: the index is
**partial** (only what was indexed since) until a rebuild (``ccrl index BUNDLE --data PATH
--redis-url URL``) clears it with :meth:`EpochWatch.mark_rebuilt`. ``/readyz`` shows the state and
``ccrl_index_partial`` exports it (the ``CcrlIndexPartial`` alert fires on it).

A Redis that comes back empty while no replica is running looks like a new one: only persistence
(``appendonly yes``, ``appendfsync everysec`` or ``always``) prevents that case.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING

from service.stores.base import IndexState, StoreListener, StoreUnavailable

if TYPE_CHECKING:
    import redis

    from service.stores.redis import RedisBackend

log = logging.getLogger("ccrl.stores")

COMPLETE = IndexState("complete")


class EpochWatch:
    """The epoch check of one namespace (see the module docstring), at most every ``interval_s``.

    Args:
        backend: the namespace's Redis backend.
        interval_s: the shortest time between two checks (one MGET each).
        listener: told of every detected loss and of the index state after each check.
    """

    def __init__(
        self,
        backend: RedisBackend,
        *,
        interval_s: float = 1.0,
        listener: StoreListener | None = None,
    ) -> None:
        self.backend = backend
        self.interval_s = interval_s
        self.listener = listener or StoreListener()
        self.k_epoch = backend.key("epoch")
        self.k_lost = backend.key("index", "lost")
        self._known: str | None = None
        self._state = IndexState("unknown", "not checked yet")
        self._next = 0.0
        self._lock = threading.Lock()

    def state(self, *, force: bool = False) -> IndexState:
        """The index state, checked against Redis when ``interval_s`` has passed (or ``force``)."""
        now = time.monotonic()
        if (force or now >= self._next) and self._lock.acquire(blocking=force):
            try:
                self._next = now + self.interval_s
                self._state = self._check()
            except StoreUnavailable as e:
                self._state = IndexState("unknown", e.reason)
            finally:
                self._lock.release()
            self.listener.index_state(self._state.state == "partial")
        return self._state

    def _check(self) -> IndexState:
        epoch_raw, lost_raw = self.backend.call(
            "index", "epoch", lambda r: r.mget([self.k_epoch, self.k_lost])
        )
        epoch = epoch_raw.decode() if epoch_raw is not None else None
        if epoch is None:
            epoch = self._create()
        if self._known is not None and epoch != self._known:
            lost_raw = self._mark_lost(epoch)
        self._known = epoch
        if lost_raw is None:
            return COMPLETE
        try:
            since = float(json.loads(lost_raw)["since"])
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
        except (ValueError, KeyError, TypeError):
            when = "an unknown time"
        return IndexState(
            "partial",
            f"Redis lost its data at {when}: the index holds only what was indexed since; "
            "rebuild it with `ccrl index BUNDLE --data PATH --redis-url URL`",
        )

    def _create(self) -> str:
        token = f"{int(time.time())}-{uuid.uuid4().hex[:12]}"

        def create(r: redis.Redis) -> bytes:
            r.set(self.k_epoch, token, nx=True)
            return r.get(self.k_epoch) or token.encode()

        return self.backend.call("index", "epoch", create).decode()

    def _mark_lost(self, epoch: str) -> bytes:
        """Record the loss (the first replica to see it sets the time); returns the record."""
        record = json.dumps({"since": time.time(), "epoch": epoch}).encode()

        def mark(r: redis.Redis) -> bytes:
            r.set(self.k_lost, record, nx=True)
            return r.get(self.k_lost) or record

        out = self.backend.call("index", "epoch", mark)
        self.listener.redis_reset()
        log.warning(
            "Redis lost its data (epoch %s -> %s): the corpus index of %s is partial until "
            "it is rebuilt (ccrl index)",
            self._known,
            epoch,
            self.backend.base,
        )
        return out

    def mark_rebuilt(self) -> None:
        """The index was rebuilt completely (by ``ccrl index``): clear the partial mark."""
        self.backend.call("index", "epoch", lambda r: r.delete(self.k_lost))
        self._next = 0.0
