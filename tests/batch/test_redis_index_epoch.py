"""A complete ``ccrl index`` run clears the partial mark a Redis that lost its data left
(service/stores/epoch.py): /readyz and ccrl_index_partial say complete again."""

from __future__ import annotations

import pytest


@pytest.mark.redis
def test_ccrl_index_writing_the_index_clears_the_partial_mark(redis_url: str) -> None:
    import numpy as np
    import redis

    from batch.redis_index import write_index
    from service.stores.redis import RedisBackend, RedisIndexStore

    store = RedisIndexStore(RedisBackend(redis_url, namespace="ns"))
    assert store.state().state == "complete"
    client = redis.Redis.from_url(redis_url)
    client.delete(store.epoch.k_epoch)  # Redis "lost its data"
    store.epoch._next = 0.0
    assert store.state().state == "partial"
    write_index(store, {}, np.asarray([], dtype=np.str_))  # the rebuild of `ccrl index`
    store.epoch._next = 0.0
    assert store.state().state == "complete" and client.get(store.epoch.k_lost) is None
    client.close()
    store.close()
