"""Redis stores: the bank and the corpus index shared by every replica.

Keys live under ``{prefix}:{namespace}:`` where the namespace names the bundle (its version and the
sha256 of its bank), so two bundles never mix banks or scores:

- ``bank:seed`` (hash: array name -> blob), ``bank:seed_id``, ``bank:version`` (a counter = the
  length of ``bank:log``), ``bank:log`` (list of label-write blobs), ``bank:lock`` (seeding guard);
- ``index:class:{c}`` (sorted set of ``"{video}:{start}"`` by score, capped),
  ``index:video:{v}`` (JSON ``{class: [starts]}``: what to remove when ``v`` is re-scored).

A blob is ``b"CCRL\\x01"``, a little-endian uint32 header length, a JSON header with ``dtype`` and
``shape`` (plus the batch's ids for log entries) and the raw array bytes. Never pickle.

Every replica keeps a local copy of the bank; it polls ``seed_id`` and ``version`` (one MGET, at
most every ``poll_interval`` seconds) and applies the new log entries when the version moves. When
Redis has no bank for this namespace, one replica seeds it from its local copy (``SET NX`` lock plus
a WATCH on ``seed_id``). Redis calls use short timeouts and no retries; after a failure the store
answers :class:`StoreUnavailable` at once for ``retry_interval`` seconds (no per-request timeout),
then tries again: the service recovers by itself.
"""

from __future__ import annotations

import json
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from service.bank import ClassBank
from service.stores.base import (
    F32,
    I64,
    BankStore,
    IndexEntry,
    IndexStore,
    LabelBatch,
    StoreHealth,
    StoreListener,
    StoreUnavailable,
    VideoExists,
    WriteResult,
    apply_batches,
)
from service.yt8m import parse_segment_id, segment_id

T = TypeVar("T")

MAGIC = b"CCRL\x01"
_ALLOWED_KINDS = frozenset("fiuU")  # never object arrays: nothing here can unpickle
_RELEASE_LOCK = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


# ---------------------------------------------------------------------------- blobs
def encode_blob(arr: np.ndarray, extra: Mapping[str, Any] | None = None) -> bytes:
    """``MAGIC | uint32 len | JSON {dtype, shape, ...extra} | raw bytes`` of a numeric array."""
    a = np.ascontiguousarray(arr)
    if a.dtype.kind not in _ALLOWED_KINDS:
        raise ValueError(f"cannot store dtype {a.dtype} (numeric or unicode arrays only)")
    header = {"dtype": a.dtype.str, "shape": list(a.shape), **(extra or {})}
    h = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(h)) + h + a.tobytes()


def decode_blob(blob: bytes, where: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Inverse of :func:`encode_blob`: (array, header); ``ValueError`` naming ``where``."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise ValueError(f"{where}: not a CCRL blob")
    (n,) = struct.unpack_from("<I", blob, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = json.loads(blob[start : start + n])
        dtype = np.dtype(header["dtype"])
        shape = tuple(int(d) for d in header["shape"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{where}: bad blob header ({e})") from None
    if dtype.kind not in _ALLOWED_KINDS:
        raise ValueError(f"{where}: dtype {dtype} is not allowed")
    payload = blob[start + n :]
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(payload) != need:
        raise ValueError(
            f"{where}: shape {list(shape)} needs {need} bytes, blob has {len(payload)}"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(shape).copy(), header


def encode_batch(batch: LabelBatch) -> bytes:
    """A label write as a log blob (the embeddings' raw float32 bytes, ids in the header)."""
    return encode_blob(
        batch.embeddings.astype("<f4"),
        {
            "class_id": int(batch.class_id),
            "video_id": batch.video_id,
            "starts": [int(s) for s in batch.starts.tolist()],
            "labels": [int(v) for v in batch.labels.tolist()],
        },
    )


def decode_batch(blob: bytes, where: str) -> LabelBatch:
    """Inverse of :func:`encode_batch`."""
    emb, h = decode_blob(blob, where)
    try:
        return LabelBatch(
            int(h["class_id"]),
            str(h["video_id"]),
            np.asarray(h["starts"], dtype=np.int64),
            np.asarray(h["labels"], dtype=np.int8),
            emb.astype(np.float32),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: bad label batch ({e})") from None


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


# ---------------------------------------------------------------------------- bank
class RedisBankStore(BankStore):
    """The bank shared through Redis, with a local copy per replica (see the module docstring)."""

    kind = "redis"

    def __init__(
        self,
        backend: RedisBackend,
        initial: ClassBank,
        *,
        poll_interval: float = 0.25,
        listener: StoreListener | None = None,
    ) -> None:
        self.backend = backend
        self.poll_interval = poll_interval
        self.listener = listener or StoreListener()
        self._bank = initial
        self._seed_id: str | None = None
        self._version = 0
        self._next_poll = 0.0
        self._lock = threading.Lock()
        self.k_seed = backend.key("bank", "seed")
        self.k_seed_id = backend.key("bank", "seed_id")
        self.k_version = backend.key("bank", "version")
        self.k_log = backend.key("bank", "log")
        self.k_lock = backend.key("bank", "lock")
        self.listener.bank_refreshed(initial)
        try:
            with self._lock:
                self._refresh()
        except StoreUnavailable:
            pass  # start degraded on the bundle's bank; snapshot() keeps trying

    # -------------------------------------------------------------- reads
    def snapshot(self) -> ClassBank:
        now = time.monotonic()
        if now >= self._next_poll and self._lock.acquire(blocking=False):
            try:
                self._next_poll = now + self.poll_interval
                self._refresh()
            except StoreUnavailable:
                pass
            finally:
                self._lock.release()
        return self._bank

    def version(self) -> int:
        return self._version

    def health(self) -> StoreHealth:
        h = self.backend.health()
        return StoreHealth("redis", h.reachable, h.detail)

    def _refresh(self) -> None:
        """Bring the local copy up to Redis (caller holds the lock)."""
        sid_raw, ver_raw = self.backend.call(
            "bank", "poll", lambda r: r.mget([self.k_seed_id, self.k_version])
        )
        if sid_raw is None:
            self._seed()
            return
        sid = sid_raw.decode() if isinstance(sid_raw, bytes) else str(sid_raw)
        version = int(ver_raw or 0)
        if sid != self._seed_id or version < self._version:
            self._full_load()
            return
        if version == self._version:
            return
        lo = self._version
        blobs: list[bytes] = self.backend.call(
            "bank", "refresh", lambda r: cast(list[bytes], r.lrange(self.k_log, lo, version - 1))
        )
        batches = self._decode_log(blobs, lo)
        self._bank = apply_batches(self._bank, batches)
        self._version = lo + len(blobs)
        self.listener.bank_refreshed(self._bank)

    def _decode_log(self, blobs: list[bytes], offset: int) -> list[LabelBatch]:
        try:
            return [decode_batch(b, f"{self.k_log}[{offset + i}]") for i, b in enumerate(blobs)]
        except ValueError as e:
            self.listener.store_error("bank", "decode")
            raise StoreUnavailable("bank", "decode", str(e)) from None

    def _full_load(self) -> None:
        def read(r: redis.Redis) -> list[Any]:
            pipe = r.pipeline(transaction=True)
            pipe.get(self.k_seed_id)
            pipe.hgetall(self.k_seed)
            pipe.lrange(self.k_log, 0, -1)
            return pipe.execute()

        sid_raw, seed, blobs = self.backend.call("bank", "load", read)
        if sid_raw is None:
            self._seed()
            return
        try:
            arrays = {
                name: decode_blob(seed[name.encode()], f"{self.k_seed}.{name}")[0]
                for name in ClassBank.ARRAYS
            }
            bank = ClassBank(**arrays)  # type: ignore[arg-type]
            bank.validate(self.k_seed)
        except (KeyError, ValueError, TypeError) as e:
            self.listener.store_error("bank", "decode")
            raise StoreUnavailable("bank", "load", f"unreadable seed ({e!r})") from None
        local = self._bank
        if (bank.num_classes, bank.dim) != (local.num_classes, local.dim):
            self.listener.store_error("bank", "load")
            raise StoreUnavailable(
                "bank",
                "load",
                f"{self.k_seed} has {bank.num_classes} classes x {bank.dim} dims, "
                f"the bundle {local.num_classes} x {local.dim}",
            )
        self._bank = apply_batches(bank, self._decode_log(blobs, 0))
        self._seed_id = sid_raw.decode()
        self._version = len(blobs)
        self.listener.bank_refreshed(self._bank)

    def _seed(self) -> None:
        """Write the local copy as this namespace's bank, unless another replica does it."""
        token = uuid.uuid4().hex
        got = self.backend.call(
            "bank", "seed", lambda r: r.set(self.k_lock, token, nx=True, px=10_000)
        )
        if not got:
            return  # another replica is seeding: pick its bank up at the next poll
        bank = self._bank
        mapping = {name: encode_blob(getattr(bank, name)) for name in ClassBank.ARRAYS}

        def write(r: redis.Redis) -> bool:
            with r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(  # type: ignore[no-untyped-call]
                        self.k_seed_id
                    )
                    if pipe.get(self.k_seed_id) is not None:
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.delete(self.k_seed, self.k_log)
                    pipe.hset(self.k_seed, mapping=cast(Mapping[Any, Any], mapping))
                    pipe.set(self.k_version, 0)
                    pipe.set(self.k_seed_id, token)
                    pipe.execute()
                    return True
                except WatchError:
                    return False
                finally:
                    r.eval(_RELEASE_LOCK, 1, self.k_lock, token)

        if self.backend.call("bank", "seed", write):
            self._seed_id = token
            self._version = 0

    # -------------------------------------------------------------- writes
    def add(self, batch: LabelBatch) -> WriteResult:
        blob = encode_batch(batch)

        def append(r: redis.Redis) -> int | None:
            with r.pipeline(transaction=True) as pipe:
                for _ in range(3):
                    try:
                        pipe.watch(  # type: ignore[no-untyped-call]
                            self.k_seed_id
                        )
                        if pipe.get(self.k_seed_id) is None:
                            pipe.unwatch()
                            return None
                        pipe.multi()
                        pipe.rpush(self.k_log, blob)
                        pipe.incr(self.k_version)
                        return int(pipe.execute()[1])
                    except WatchError:
                        continue
            raise StoreUnavailable("bank", "add", "the bank was re-seeded during the write")

        version = self.backend.call("bank", "add", append)
        if version is None:  # Redis lost the bank (e.g. restarted): seed it, then write
            with self._lock:
                self._seed()
            version = self.backend.call("bank", "add", append)
            if version is None:
                raise StoreUnavailable("bank", "add", "the bank is being seeded; try again")
        with self._lock:
            try:
                self._refresh()
            except StoreUnavailable:
                pass  # stored; the local copy catches up at the next poll
        bank = self._bank
        c = batch.class_id
        return WriteResult(version, int(bank.pos_count[c]), int(bank.neg_count[c]))

    def close(self) -> None:
        self.backend.close()


# ---------------------------------------------------------------------------- index
class RedisIndexStore(IndexStore):
    """The corpus index in Redis: one capped sorted set per class."""

    kind = "redis"

    def __init__(self, backend: RedisBackend, cap: int = 100_000) -> None:
        if cap < 1:
            raise ValueError(f"index cap must be >= 1, got {cap}")
        self.backend = backend
        self.cap = cap

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

    def health(self) -> StoreHealth:
        return self.backend.health()

    def close(self) -> None:
        self.backend.close()
