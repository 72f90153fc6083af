"""The bank and index stores: in-process and Redis (a real redis-server on a spare port)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from service.bank import ClassBank, NotInBank
from service.stores.base import IndexStore, LabelBatch, StoreListener, StoreUnavailable
from service.stores.memory import MemoryBankStore, MemoryIndexStore
from service.stores.redis import RedisBackend, RedisIndexStore
from service.stores.redis_bank import BankKeys, RedisBankStore

C, D = 5, 8


def small_bank(seed: int = 0) -> ClassBank:
    rng = np.random.default_rng(seed)
    n = 12
    return ClassBank.from_entries(
        rng.normal(size=(n, D)),
        rng.integers(0, C, n),
        rng.integers(0, 2, n),
        [f"v{i % 4}" for i in range(n)],
        (np.arange(n) % 6) * 5,
        num_classes=C,
    )


def batch(class_id: int = 1, video: str = "new", starts: tuple[int, ...] = (0, 5), label: int = 1):
    rng = np.random.default_rng(class_id)
    n = len(starts)
    return LabelBatch(
        class_id,
        video,
        np.asarray(starts, np.int64),
        np.full(n, label, np.int8),
        rng.normal(size=(n, D)).astype(np.float32),
    )


class Recorder(StoreListener):
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []
        self.degraded_states: list[bool] = []
        self.refreshes = 0

    def store_error(self, store: str, op: str) -> None:
        self.errors.append((store, op))

    def degraded(self, on: bool) -> None:
        self.degraded_states.append(on)

    def bank_refreshed(self, bank: ClassBank) -> None:
        self.refreshes += 1


def backend(url: str, namespace: str = "t", listener: StoreListener | None = None) -> RedisBackend:
    return RedisBackend(
        url, namespace=namespace, timeout=0.2, retry_interval=0.2, listener=listener
    )


# ---------------------------------------------------------------------------- index
@pytest.fixture(params=["memory", "redis"])
def index_factory(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield lambda cap: MemoryIndexStore(cap)
    else:
        server = request.getfixturevalue("redis_server")
        yield lambda cap: RedisIndexStore(backend(server.url), cap)


def put(index: IndexStore, vid: str, entries: dict[int, list[float]]) -> int:
    return index.put_video(
        vid,
        {
            c: (np.arange(len(s), dtype=np.int64) * 5, np.asarray(s, np.float32))
            for c, s in entries.items()
        },
    )


def test_index_ranks_best_first_and_pages(index_factory: Any) -> None:
    index = index_factory(100)
    assert put(index, "a", {1: [0.1, 0.9, 0.5]}) == 3
    put(index, "b", {1: [0.7], 2: [0.3]})
    total, top = index.top(1, limit=10)
    assert total == 4
    assert [(e.video_id, e.start) for e in top] == [("a", 5), ("b", 0), ("a", 10), ("a", 0)]
    assert top[0].score == pytest.approx(0.9)
    total, page = index.top(1, limit=2, offset=1)
    assert [(e.video_id, e.start) for e in page] == [("b", 0), ("a", 10)]
    assert index.top(3, limit=5) == (0, [])


def test_index_rescoring_a_video_replaces_its_entries(index_factory: Any) -> None:
    index = index_factory(100)
    put(index, "a", {1: [0.1, 0.9, 0.5], 2: [0.4]})
    put(index, "b", {1: [0.6]})
    put(index, "a", {1: [0.2]})  # a now has one segment for class 1 and none for class 2
    total, top = index.top(1, limit=10)
    assert total == 2
    assert [(e.video_id, e.start, round(e.score, 3)) for e in top] == [("b", 0, 0.6), ("a", 0, 0.2)]
    assert index.top(2, limit=10)[0] == 0


def test_index_is_capped_keeping_the_best(index_factory: Any) -> None:
    index = index_factory(3)
    put(index, "a", {7: [0.5, 0.1, 0.9]})
    put(index, "b", {7: [0.3, 0.8]})
    total, top = index.top(7, limit=10)
    assert total == 3
    assert [round(e.score, 2) for e in top] == [0.9, 0.8, 0.5]


# ---------------------------------------------------------------------------- bank
def test_memory_bank_add_counts_relabel_and_remove() -> None:
    rec = Recorder()
    store = MemoryBankStore(small_bank(), listener=rec)
    before = store.snapshot()
    res = store.add(batch(class_id=2, starts=(0, 5, 10)))
    assert res.version == 1 and res.replaced == 0
    assert res.positive == int(before.pos_count[2]) + 3
    res = store.add(batch(class_id=2, starts=(0,), label=0))  # relabel one segment
    assert res.replaced == 1
    assert (res.positive, res.negative) == (
        int(before.pos_count[2]) + 2,
        int(before.neg_count[2]) + 1,
    )
    assert len(store.snapshot()) == len(before) + 3
    gone = store.remove(2, "new", [0, 10])
    assert gone.labels == [0, 1] and gone.version == 3
    assert len(store.snapshot()) == len(before) + 1
    with pytest.raises(NotInBank, match="at starts 0, 10"):
        store.remove(2, "new", [0, 10])
    assert store.version() == 3 and len(store.snapshot()) == len(before) + 1
    assert rec.refreshes == 4


def wait_for(cond: Any, what: str, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def bank_store(url: str, bank: ClassBank, ns: str = "t", **kw: Any) -> RedisBankStore:
    listener = kw.pop("listener", None)
    return RedisBankStore(
        backend(url, ns, listener), bank, poll_interval=0.05, listener=listener, **kw
    )


def test_redis_bank_is_seeded_once_and_shared_between_replicas(redis_server: Any) -> None:
    initial = small_bank()
    a = bank_store(redis_server.url, initial)
    b = bank_store(redis_server.url, initial)
    assert a._seed is not None and a._seed == b._seed
    res = a.add(batch(class_id=3, starts=(0, 5)))
    assert res.version == 1
    wait_for(lambda: b.version() == 1, "the other replica to see the write")
    snap = b.snapshot()
    assert int(snap.pos_count[3]) == int(initial.pos_count[3]) + 2
    np.testing.assert_allclose(snap.pos_sum, a.snapshot().pos_sum, rtol=0, atol=1e-6)
    # a third replica starting now loads the bank and the write from Redis
    c = bank_store(redis_server.url, initial)
    assert c.version() == 1 and int(c.snapshot().pos_count[3]) == int(snap.pos_count[3])
    # another bundle namespace never sees this bank
    other = bank_store(redis_server.url, initial, "other")
    assert other.version() == 0 and len(other.snapshot()) == len(initial)
    for s in (a, b, c, other):
        s.close()


def test_redis_bank_seeding_is_guarded_by_a_lock(redis_server: Any) -> None:
    import redis

    be = backend(redis_server.url)
    r = redis.Redis.from_url(redis_server.url)
    keys = BankKeys(be.base)
    r.set(keys.lock, "someone-else", px=10_000)
    store = RedisBankStore(be, small_bank(), poll_interval=0.05)
    assert r.hget(keys.meta, "seed") is None  # the lock holder seeds, not us
    assert len(store.snapshot()) == len(small_bank())  # we score from our local copy meanwhile
    with pytest.raises(StoreUnavailable, match="being seeded"):
        store.add(batch())
    r.delete(keys.lock)
    wait_for(lambda: r.hget(keys.meta, "seed") is not None, "the bank to be seeded")
    store.close()


def test_redis_bank_down_keeps_local_copy_refuses_writes_and_recovers(redis_server: Any) -> None:
    rec = Recorder()
    store = bank_store(redis_server.url, small_bank(), listener=rec)
    store.add(batch(class_id=4, starts=(0, 5, 10)))
    with_labels = store.snapshot()
    redis_server.stop()
    assert store.snapshot() is with_labels  # scoring goes on from the local copy
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.add(batch(class_id=1))
    assert rec.degraded_states == [True]
    assert not store.health().reachable
    assert ("bank", "add") in rec.errors
    redis_server.start()  # an empty Redis (no persistence): the replica re-seeds from its copy
    wait_for(lambda: store.health().reachable, "Redis to answer again")
    wait_for(lambda: rec.degraded_states == [True, False], "the store to recover")
    snap = store.snapshot()
    assert int(snap.pos_count[4]) == int(with_labels.pos_count[4])
    res = store.add(batch(class_id=1, video="after"))
    assert res.version == 1
    fresh = bank_store(redis_server.url, small_bank())
    assert int(fresh.snapshot().pos_count[4]) == int(with_labels.pos_count[4])
    store.close()
    fresh.close()


def test_redis_index_down_raises_store_unavailable_fast(redis_server: Any) -> None:
    import time

    index = RedisIndexStore(backend(redis_server.url), 10)
    put(index, "a", {1: [0.5]})
    redis_server.stop()
    with pytest.raises(StoreUnavailable):
        index.top(1, limit=5)
    t = time.perf_counter()
    with pytest.raises(StoreUnavailable, match="index store is unavailable"):
        put(index, "a", {1: [0.5]})
    fast = time.perf_counter() - t
    print(f"fail-fast write while down: {fast * 1000:.2f} ms")


def test_a_replica_started_while_redis_is_down_serves_its_bundle_bank_then_seeds(
    redis_server: Any,
) -> None:
    rec = Recorder()
    redis_server.stop()
    store = bank_store(redis_server.url, small_bank(), listener=rec)
    assert rec.degraded_states == [True]
    assert len(store.snapshot()) == len(small_bank())
    with pytest.raises(StoreUnavailable):
        store.add(batch())
    redis_server.start()
    wait_for(lambda: store._seed is not None, "the background thread to seed the bank")
    assert rec.degraded_states == [True, False]
    assert store.add(batch()).version == 1
    store.close()
