"""The bank and index stores: in-process and Redis (a real redis-server on a spare port)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from service.bank import ClassBank
from service.stores.base import IndexStore, LabelBatch, StoreListener, StoreUnavailable
from service.stores.memory import MemoryBankStore, MemoryIndexStore
from service.stores.redis import (
    RedisBackend,
    RedisBankStore,
    RedisIndexStore,
    decode_batch,
    decode_blob,
    encode_batch,
    encode_blob,
)

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


# ---------------------------------------------------------------------------- blobs
def test_blobs_round_trip_raw_arrays_with_a_header_and_never_pickle() -> None:
    for arr in (
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array(["ab", "c"]),
        np.zeros(0, np.int8),
    ):
        out, header = decode_blob(encode_blob(arr), "k")
        np.testing.assert_array_equal(out, arr)
        assert header["shape"] == list(arr.shape)
    with pytest.raises(ValueError, match="object"):
        encode_blob(np.array([{}], dtype=object))
    blob = encode_blob(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="needs 16 bytes"):
        decode_blob(blob[:-1], "key1")
    with pytest.raises(ValueError, match="not a CCRL blob"):
        decode_blob(b"\x80\x04pickle", "key2")
    b = batch()
    back = decode_batch(encode_batch(b), "log")
    assert (back.class_id, back.video_id) == (b.class_id, b.video_id)
    np.testing.assert_array_equal(back.embeddings, b.embeddings)


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
def test_memory_bank_add_counts_and_relabel() -> None:
    rec = Recorder()
    store = MemoryBankStore(small_bank(), listener=rec)
    before = store.snapshot()
    res = store.add(batch(class_id=2, starts=(0, 5, 10)))
    assert res.version == 1
    assert res.positive == int(before.pos_count[2]) + 3
    res = store.add(batch(class_id=2, starts=(0,), label=0))  # relabel one segment
    assert (res.positive, res.negative) == (
        int(before.pos_count[2]) + 2,
        int(before.neg_count[2]) + 1,
    )
    assert len(store.snapshot()) == len(before) + 3
    assert rec.refreshes == 3


def test_redis_bank_is_seeded_once_and_shared_between_replicas(redis_server: Any) -> None:
    initial = small_bank()
    a = RedisBankStore(backend(redis_server.url), initial, poll_interval=0)
    b = RedisBankStore(backend(redis_server.url), initial, poll_interval=0)
    assert a._seed_id is not None and a._seed_id == b._seed_id
    res = a.add(batch(class_id=3, starts=(0, 5)))
    assert res.version == 1
    snap = b.snapshot()  # the other replica sees the write at its next poll
    assert b.version() == 1
    assert int(snap.pos_count[3]) == int(initial.pos_count[3]) + 2
    np.testing.assert_allclose(snap.pos_sum, a.snapshot().pos_sum, rtol=0, atol=1e-6)
    # a third replica starting now loads seed + log from Redis
    c = RedisBankStore(backend(redis_server.url), initial, poll_interval=0)
    assert c.version() == 1 and int(c.snapshot().pos_count[3]) == int(snap.pos_count[3])
    # another bundle namespace never sees this bank
    other = RedisBankStore(backend(redis_server.url, "other"), initial, poll_interval=0)
    assert other.version() == 0 and len(other.snapshot()) == len(initial)


def test_redis_bank_seeding_is_guarded_by_a_lock(redis_server: Any) -> None:
    import redis

    be = backend(redis_server.url)
    r = redis.Redis.from_url(redis_server.url)
    r.set(be.key("bank", "lock"), "someone-else", px=10_000)
    store = RedisBankStore(be, small_bank(), poll_interval=0)
    assert r.get(be.key("bank", "seed_id")) is None  # the lock holder seeds, not us
    assert len(store.snapshot()) == len(small_bank())  # we score from our local copy meanwhile
    r.delete(be.key("bank", "lock"))
    store.snapshot()
    assert r.get(be.key("bank", "seed_id")) is not None


def test_redis_bank_down_keeps_local_copy_refuses_writes_and_recovers(redis_server: Any) -> None:
    import time

    rec = Recorder()
    be = backend(redis_server.url, listener=rec)
    store = RedisBankStore(be, small_bank(), poll_interval=0, listener=rec)
    store.add(batch(class_id=4, starts=(0, 5, 10)))
    with_labels = store.snapshot()
    redis_server.stop()
    assert store.snapshot() is with_labels  # scoring goes on from the local copy
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.add(batch(class_id=1))
    assert rec.degraded_states == [True]
    assert not store.health().reachable
    assert ("bank", "poll") in rec.errors or ("bank", "add") in rec.errors
    redis_server.start()  # an empty Redis (no persistence): the replica re-seeds from its copy
    time.sleep(0.25)
    assert store.health().reachable
    snap = store.snapshot()
    assert rec.degraded_states == [True, False]
    assert int(snap.pos_count[4]) == int(with_labels.pos_count[4])
    res = store.add(batch(class_id=1, video="after"))
    assert res.version == 1
    fresh = RedisBankStore(backend(redis_server.url), small_bank(), poll_interval=0)
    assert int(fresh.snapshot().pos_count[4]) == int(with_labels.pos_count[4])


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
    import time

    rec = Recorder()
    redis_server.stop()
    store = RedisBankStore(
        backend(redis_server.url, listener=rec), small_bank(), poll_interval=0, listener=rec
    )
    assert rec.degraded_states == [True]
    assert len(store.snapshot()) == len(small_bank())
    with pytest.raises(StoreUnavailable):
        store.add(batch())
    redis_server.start()
    time.sleep(0.25)  # past the retry interval: the next snapshot reaches Redis and seeds it
    store.snapshot()
    assert rec.degraded_states == [True, False]
    assert store.add(batch()).version == 1
