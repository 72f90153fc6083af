"""The review store (in process and on a real Redis): two capped lists per class (best score,
nearest the boundary), one item per segment while it is in either list, updates of kept segments
only; and the queue's priorities and the objective's margin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from service.stores.kept import KeptItem, KeptStore, MemoryKeptStore

NF, D = 4, 3


def _item(video: str, start: int, score: float, margin: float | None = None) -> KeptItem:
    rng = np.random.default_rng(start + len(video))
    x = rng.normal(size=NF).astype(np.float32)
    x[1] = np.nan  # a missing feature survives the round trip
    return KeptItem(
        video,
        start,
        score,
        score if margin is None else margin,
        x,
        rng.normal(size=(3 if start else 2, D)).astype(np.float32),
        1 if start else 0,
    )


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[KeptStore]:
    if request.param == "memory":
        yield MemoryKeptStore(cap=3)
        return
    from service.stores.redis import RedisBackend
    from service.stores.redis_kept import RedisKeptStore

    url = request.getfixturevalue("redis_url")
    backend = RedisBackend(url, namespace="kept-test")
    yield RedisKeptStore(backend, cap=3)
    backend.close()


def _members(items: list[KeptItem]) -> list[str]:
    return [it.member for it in items]


def test_each_list_keeps_its_best_and_an_item_lives_while_in_either(store: KeptStore) -> None:
    # scores (= margins here): top keeps the 3 highest, edge the 3 nearest 0
    items = [_item("a", 5 * i, s) for i, s in enumerate([0.9, -0.05, 0.6, 0.1, 2.0, -3.0])]
    store.put(7, items[:4])
    assert store.floors(7)[0] == pytest.approx(0.1)  # the 3rd best score so far
    store.put(7, items[4:])
    assert _members(store.ranked(7, "top", 10)) == ["a:20", "a:0", "a:10"]
    assert _members(store.ranked(7, "edge", 10)) == ["a:5", "a:15", "a:10"]
    assert _members(store.ranked(7, "top", 1, offset=1)) == ["a:0"]
    kept = sorted(_members(store.items(7)))
    assert kept == ["a:0", "a:10", "a:15", "a:20", "a:5"]  # a:25 is in neither list
    got = store.get(7, ["a:20", "a:25", "b:0"])
    assert got[1] is None and got[2] is None and got[0] is not None
    assert got[0].score == 2.0 and got[0].row == 1
    np.testing.assert_array_equal(got[0].x, items[4].x)  # NaN where NaN
    np.testing.assert_array_equal(got[0].window, items[4].window)
    np.testing.assert_array_equal(got[0].embedding, items[4].window[1])
    assert store.floors(7) == (pytest.approx(0.6), pytest.approx(-0.6))
    assert store.items(8) == [] and store.ranked(8, "edge", 5) == []


def test_updates_touch_only_kept_segments_and_move_them(store: KeptStore) -> None:
    store.put(1, [_item("v", 0, 0.9), _item("v", 5, 0.8), _item("v", 10, 0.7)])
    store.put(1, [_item("v", 5, 0.95), _item("w", 0, 5.0)], existing_only=True)
    assert sorted(_members(store.items(1))) == ["v:0", "v:10", "v:5"]  # w:0 was not kept
    assert _members(store.ranked(1, "top", 3)) == ["v:5", "v:0", "v:10"]
    assert store.get(1, ["v:5"])[0].score == 0.95  # type: ignore[union-attr]


def test_cap_zero_keeps_nothing() -> None:
    store = MemoryKeptStore(cap=0)
    store.put(1, [_item("v", 0, 0.9)])
    assert store.items(1) == [] and store.get(1, ["v:0"]) == [None]


def test_priorities_and_margins_follow_the_objective() -> None:
    from service.review import margin_function, pick, queue_priority

    scores = np.array([0.5, 0.9, 0.1, 0.55], np.float32)
    logit = margin_function("binary:logistic")(scores)
    np.testing.assert_allclose(logit, np.log(scores / (1 - scores)), rtol=1e-5)
    same = margin_function("rank:pairwise")(scores)
    np.testing.assert_array_equal(same, scores)  # ranking objectives: the score is the margin
    edge = queue_priority("uncertain", scores, logit)
    assert np.argsort(-edge).tolist() == [0, 3, 1, 2]  # nearest 0.5 first (0.9 ~ 0.1 in logit)
    top = queue_priority("top_unlabelled", scores, logit)
    assert pick(top, 0.2, 2).tolist() == [1, 3] and pick(top, 0.95, 2).tolist() == []
    with pytest.raises(ValueError, match="strategy must be one of"):
        queue_priority("random", scores, logit)


def test_redis_items_are_blobs_without_pickle(redis_url: str) -> None:
    import redis

    from service.stores.redis import RedisBackend
    from service.stores.redis_kept import RedisKeptStore, decode_item

    backend = RedisBackend(redis_url, namespace="kept-blob")
    RedisKeptStore(backend, cap=2).put(3, [_item("v", 5, 0.5)])
    client: Any = redis.Redis.from_url(redis_url)
    keys = sorted(k.decode() for k in client.keys("ccrl:kept-blob:*"))
    assert keys == [f"ccrl:kept-blob:review:3:{k}" for k in ("edge", "item", "top")]
    blob = client.hget("ccrl:kept-blob:review:3:item", "v:5")
    assert blob.startswith(b"CCRB\x01") and decode_item(blob, "x").start == 5  # raw arrays
    with pytest.raises(ValueError, match="not a kept item"):
        decode_item(b"pickle", "here")
    client.close()
    backend.close()


def test_several_classes_are_offered_at_once(store: KeptStore) -> None:
    store.put_classes({1: [_item("v", 0, 0.9)], 2: [_item("v", 0, 0.1), _item("v", 5, 0.2)], 3: []})
    assert _members(store.items(1)) == ["v:0"]
    assert sorted(_members(store.items(2))) == ["v:0", "v:5"] and store.items(3) == []
    assert store.floors(2) == (-np.inf, -np.inf)  # not full yet: anything enters
