"""The review store in Redis (:mod:`service.stores.kept`), on the index's connection and namespace.

Keys, under the namespace of :mod:`service.stores.redis` (one per bundle):

- ``review:{c}:top``, ``review:{c}:edge`` (sorted sets of ``"{video}:{start}"`` by priority: the
  score, ``-|margin|``), each trimmed to the ``cap`` highest;
- ``review:{c}:item`` (hash: member -> blob of the item, see below); a member leaves it when it
  is in neither list.

An item is one record of :mod:`service.bank_records` (kind ``kept``, raw arrays, never pickle): the
feature row ``x`` float32 [NF], the ``window`` float32 [w, D], the ``video`` id, ``start`` and
``row``, ``score`` and ``margin``. One Lua script per class adds, trims and drops orphans
atomically, and answers the lists' floors; the store remembers them to send, next time, only the
segments that can enter (a hint: a floor lowered by another replica's re-scoring only makes this
one skip a few candidates until its next write to the class).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import redis

from service.bank_records import decode_arrays, encode_arrays
from service.stores.kept import LISTS, Floors, KeptItem, KeptStore
from service.stores.redis import RedisBackend

_PUT = """
local cap, existing_only = tonumber(ARGV[1]), ARGV[2] == '1'
for i = 3, #ARGV, 4 do
  local m = ARGV[i]
  if not existing_only or redis.call('HEXISTS', KEYS[3], m) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], m)
    redis.call('ZADD', KEYS[2], ARGV[i + 2], m)
    redis.call('HSET', KEYS[3], m, ARGV[i + 3])
  end
end
local floors = {}
for k = 1, 2 do
  local extra = redis.call('ZCARD', KEYS[k]) - cap
  if extra > 0 then
    local gone = redis.call('ZRANGE', KEYS[k], 0, extra - 1)
    redis.call('ZREMRANGEBYRANK', KEYS[k], 0, extra - 1)
    for _, g in ipairs(gone) do
      if not redis.call('ZSCORE', KEYS[3 - k], g) then redis.call('HDEL', KEYS[3], g) end
    end
  end
  if redis.call('ZCARD', KEYS[k]) >= cap then
    floors[k] = redis.call('ZRANGE', KEYS[k], 0, 0, 'WITHSCORES')[2]
  else
    floors[k] = '-inf'
  end
end
return floors
"""


def encode_item(item: KeptItem) -> bytes:
    """A kept item as one record of :mod:`service.bank_records` (kind ``kept``: raw arrays)."""
    return encode_arrays(
        "kept",
        {
            "x": item.x.astype(np.float32),
            "window": item.window.astype(np.float32),
            "video": np.asarray([item.video_id], dtype=np.str_),
            "ints": np.asarray([item.start, item.row], dtype=np.int64),
            "scores": np.asarray([item.score, item.margin], dtype=np.float64),
        },
    )


def decode_item(blob: bytes, where: str) -> KeptItem:
    """Inverse of :func:`encode_item`; ``ValueError`` naming ``where``."""
    try:
        kind, a = decode_arrays(blob, where)
        if kind != "kept":
            raise ValueError(f"a {kind!r} record")
        start, row = (int(v) for v in a["ints"].tolist())
        score, margin = (float(v) for v in a["scores"].tolist())
        x, window = a["x"].astype(np.float32), a["window"].astype(np.float32)
        return KeptItem(str(a["video"][0]), start, score, margin, x, window, row)
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: not a kept item ({e})") from None


class RedisKeptStore(KeptStore):
    """The kept segments in Redis, shared by every replica (see the module docstring)."""

    kind = "redis"

    def __init__(self, backend: RedisBackend, cap: int = 100) -> None:
        if cap < 0:
            raise ValueError(f"kept cap must be >= 0, got {cap}")
        self.backend = backend
        self.cap = cap
        self._script = backend.client.register_script(_PUT)
        self._floors: dict[int, Floors] = {}
        self._lock = threading.Lock()

    def _keys(self, class_id: int) -> list[str]:
        return [self.backend.key("review", class_id, k) for k in (*LISTS, "item")]

    def floors(self, class_id: int) -> Floors:
        with self._lock:
            return self._floors.get(class_id, (-np.inf, -np.inf))

    def put(self, class_id: int, items: Sequence[KeptItem], *, existing_only: bool = False) -> None:
        self._put({class_id: items}, existing_only)

    def put_classes(self, offers: Mapping[int, Sequence[KeptItem]]) -> None:
        self._put(offers, False)

    def _put(self, offers: Mapping[int, Sequence[KeptItem]], existing_only: bool) -> None:
        """One pipeline of one script call per class; remembers each class's floors."""
        calls = [(c, self._args(items, existing_only)) for c, items in offers.items() if items]
        if self.cap == 0 or not calls:
            return

        def run(r: redis.Redis) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for c, args in calls:
                self._script(keys=self._keys(c), args=args, client=pipe)
            return pipe.execute()

        replies = self.backend.call("index", "keep", run)
        with self._lock:
            for (c, _), raw in zip(calls, replies, strict=True):
                self._floors[c] = (float(raw[0]), float(raw[1]))

    def _args(self, items: Sequence[KeptItem], existing_only: bool) -> list[Any]:
        args: list[Any] = [self.cap, "1" if existing_only else "0"]
        for it in items:
            args += [it.member, repr(it.priority("top")), repr(it.priority("edge"))]
            args.append(encode_item(it))
        return args

    def ranked(self, class_id: int, which: str, limit: int, offset: int = 0) -> list[KeptItem]:
        keys = self._keys(class_id)
        zkey = keys[LISTS.index(which)]

        def read(r: redis.Redis) -> list[Any]:
            members = r.zrange(zkey, offset, offset + limit - 1, desc=True)
            return [] if not members else list(zip(members, r.hmget(keys[2], members), strict=True))

        rows = self.backend.call("index", "review", read)
        return [decode_item(b, f"{keys[2]}[{m!r}]") for m, b in rows if b is not None]

    def get(self, class_id: int, members: Sequence[str]) -> list[KeptItem | None]:
        if not members:
            return []
        key = self._keys(class_id)[2]
        blobs = self.backend.call("index", "kept", lambda r: r.hmget(key, list(members)))
        return [
            None if b is None else decode_item(b, f"{key}[{m!r}]")
            for m, b in zip(members, blobs, strict=True)
        ]

    def items(self, class_id: int) -> list[KeptItem]:
        key = self._keys(class_id)[2]
        blobs = self.backend.call("index", "kept", lambda r: r.hgetall(key))
        return [decode_item(b, f"{key}[{m!r}]") for m, b in blobs.items()]
