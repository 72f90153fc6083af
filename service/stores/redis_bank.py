"""The bank shared through Redis, per class and in bounded records, with a local copy per replica.

Layout (``B`` = ``{prefix}:{namespace}``; the braces are Redis Cluster hash tags, so each class
lives in one slot and its keys can be changed together by one script):

- ``{B:bank}:meta`` (hash): ``seed`` (a token per seeding), ``rows`` (entries per seeded record),
  ``dim``, ``classes``. Written last when seeding: a bank without it is not seeded.
- ``{B:bank}:version`` (counter): one per label write, for ``/readyz`` and the write answers.
- ``{B:bank}:changes`` (stream, capped at ``stream_len``): one entry per write, ``c`` (class),
  ``n`` (the class's record count after it), ``e`` (its epoch), ``v`` (the version).
- ``{B:bank}:lock``: the seeding guard (``SET NX PX``, renewed while seeding).
- ``{B:bank:c}:meta`` (hash): ``seed`` and ``epoch`` of class c's log; ``epoch`` is ``bundle``
  while the log starts with the bundle's own entries for c, a fresh token after a compaction.
- ``{B:bank:c}:log`` (list): class c's records (:mod:`service.bank_records`: ``add`` / ``del``,
  raw little-endian arrays, at most ``record_bytes`` each).

A write of n entries appends its records to one class's log with a compare-and-set on (seed, epoch,
record count) (one script, O(n D) bytes), then announces itself on the stream. A replica's
background thread blocks on the stream (``XREAD BLOCK``), so it applies another replica's write
within milliseconds, reading only that class's new records; ``/localize`` never waits for Redis,
it reads the immutable snapshot the thread swaps in. A class's log is compacted (rewritten with its
live entries) when its dead entries outnumber the live ones plus one record's worth, so no log
grows with the history of writes; the stream is capped, and a replica that fell behind it compares
every class's (epoch, count) instead. A new replica skips every class whose log is still the
bundle's own entries (it has them from the bundle) and reads only the records appended since.

Redis memory is about the raw entries: 4 D + ~50 bytes per entry (1,000 entries at D = 1,152 are
about 4.7 MB) plus a few hundred bytes per record and class.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service import bank_class as bc
from service.bank import ClassBank, NotInBank, unit_rows
from service.bank_records import (
    MAX_RECORD_BYTES,
    Record,
    add_records,
    decode_record,
    del_record,
    rows_per_record,
)
from service.stores.base import (
    BankStore,
    LabelBatch,
    RemoveResult,
    StoreHealth,
    StoreListener,
    StoreUnavailable,
    WriteResult,
)
from service.stores.redis import RedisBackend

BUNDLE_EPOCH = "bundle"
PIPELINE_BYTES = 8 << 20
"""Seeding and loading send or read at most about this many bytes per pipeline."""

_APPEND = """
local m = redis.call('HMGET', KEYS[1], 'seed', 'epoch')
if m[1] ~= ARGV[1] then return {-1, 0} end
local n = redis.call('LLEN', KEYS[2])
if m[2] ~= ARGV[2] or n ~= tonumber(ARGV[3]) then return {-2, n} end
for i = 4, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
return {0, n + #ARGV - 3}
"""
_ANNOUNCE = """
local v = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*', 'c', ARGV[1], 'n', ARGV[2],
  'e', ARGV[3], 'v', v)
return v
"""
_READ = """
local m = redis.call('HMGET', KEYS[1], 'seed', 'epoch')
local n = redis.call('LLEN', KEYS[2])
local f = tonumber(ARGV[1])
local recs = {}
if f < n and tonumber(ARGV[2]) > 0 then
  recs = redis.call('LRANGE', KEYS[2], f, f + tonumber(ARGV[2]) - 1)
end
return {m[1] or '', m[2] or '', n, recs}
"""
_SWITCH = """
local m = redis.call('HMGET', KEYS[1], 'seed', 'epoch')
if m[1] ~= ARGV[1] or m[2] ~= ARGV[2] or redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[3])
  return -1
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('RENAME', KEYS[3], KEYS[2])
  redis.call('PERSIST', KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[4])
return redis.call('LLEN', KEYS[2])
"""
_RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


class BankKeys:
    """The Redis keys of one namespace's bank (hash-tagged: one slot per class)."""

    def __init__(self, base: str) -> None:
        b = base.replace("{", "(").replace("}", ")")
        self.base = b
        self.meta = f"{{{b}:bank}}:meta"
        self.version = f"{{{b}:bank}}:version"
        self.changes = f"{{{b}:bank}}:changes"
        self.lock = f"{{{b}:bank}}:lock"

    def cmeta(self, c: int) -> str:
        return f"{{{self.base}:bank:{c}}}:meta"

    def clog(self, c: int) -> str:
        return f"{{{self.base}:bank:{c}}}:log"

    def cnew(self, c: int, token: str) -> str:
        return f"{{{self.base}:bank:{c}}}:new:{token}"


@dataclass(frozen=True)
class ClassSync:
    """What the local copy holds of one class's log: its epoch, the records applied and the
    entries those records added (live or dead since)."""

    epoch: str
    records: int
    stored: int


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


class RedisBankStore(BankStore):
    """The bank shared through Redis per class (see the module docstring)."""

    kind = "redis"

    def __init__(
        self,
        backend: RedisBackend,
        initial: ClassBank,
        *,
        poll_interval: float = 1.0,
        record_bytes: int = MAX_RECORD_BYTES,
        stream_len: int = 10_000,
        reconcile_interval: float = 60.0,
        listener: StoreListener | None = None,
        background: bool = True,
        bulk_timeout: float = 30.0,
    ) -> None:
        self.backend = backend
        self.keys = BankKeys(backend.base)
        self.poll_interval = max(float(poll_interval), 0.05)
        self.record_bytes = int(record_bytes)
        self.stream_len = int(stream_len)
        self.reconcile_interval = float(reconcile_interval)
        self.listener = listener or StoreListener()
        self._initial = initial
        self._bank = initial
        self._seed: str | None = None
        self._rows = rows_per_record(initial.dim, self.record_bytes)
        self._sync: list[ClassSync] = []
        self._version = 0
        self._stream_v = 0
        self._last_id = "0-0"
        self._next_reconcile = 0.0
        self.records_read = 0  # records fetched from Redis so far (for tests and benchmarks)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        # seeding and loading move megabytes per call: a client with a longer socket timeout
        self._bulk = redis.Redis.from_url(
            backend.url,
            socket_timeout=max(bulk_timeout, backend.timeout),
            socket_connect_timeout=backend.timeout,
            retry=Retry(NoBackoff(), 0),
        )
        r = backend.client
        self._append = r.register_script(_APPEND)
        self._announce = r.register_script(_ANNOUNCE)
        self._read = r.register_script(_READ)
        self._switch = r.register_script(_SWITCH)
        self._renew = r.register_script(_RENEW)
        self._release = r.register_script(_RELEASE)
        self.listener.bank_refreshed(initial)
        try:
            with self._lock:
                self._load()
        except StoreUnavailable:
            pass  # start degraded on the bundle's bank; the background thread keeps trying
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="ccrl-bank", daemon=True)
            self._thread.start()

    # -------------------------------------------------------------- reads
    def snapshot(self) -> ClassBank:
        """The current immutable snapshot (no I/O: the background thread keeps it fresh)."""
        return self._bank

    def version(self) -> int:
        return self._version

    def health(self) -> StoreHealth:
        h = self.backend.health()
        return StoreHealth("redis", h.reachable, h.detail)

    def _call(self, op: str, fn: Callable[[redis.Redis], Any]) -> Any:
        return self.backend.call("bank", op, fn)

    def _bulk_call(self, op: str, fn: Callable[[redis.Redis], Any]) -> Any:
        """Like :meth:`_call` (the same up/down state) on the long-timeout client."""
        return self.backend.call("bank", op, lambda _r: fn(self._bulk))

    # -------------------------------------------------------------- loading
    def _pristine_sync(self, rows: int) -> list[ClassSync]:
        """The sync state of a local copy whose classes are the bundle's own (where they are)."""
        out = []
        for c in range(self._bank.num_classes):
            v = self._bank.view(c)
            if v is self._initial.view(c):
                out.append(ClassSync(BUNDLE_EPOCH, math.ceil(v.live / rows), v.live))
            else:
                out.append(ClassSync("", -1, 0))
        return out

    def _load(self) -> None:
        """Bring the local copy up to Redis (seeding Redis when it has no bank); holds the lock."""
        remote = self._read_remote()
        if remote is None:
            self._seed_bank()
            return
        self._apply_remote(*remote)

    def _read_remote(self) -> tuple[dict[str, str], str, int, list[tuple[str, str, int]]] | None:
        """(bank meta, stream tip, version, every class's (seed, epoch, records)), None when
        Redis has no bank for this namespace. Needs no lock."""
        raw = self._call("load", lambda r: r.hgetall(self.keys.meta))
        meta = {_s(k): _s(v) for k, v in raw.items()}
        if "seed" not in meta:
            return None
        dims = (int(meta.get("classes", -1)), int(meta.get("dim", -1)))
        if dims != (self._bank.num_classes, self._bank.dim):
            self.listener.store_error("bank", "load")
            raise StoreUnavailable(
                "bank", "load", f"{self.keys.meta} has {dims[0]} classes x {dims[1]} dims, "
                f"the bundle {self._bank.num_classes} x {self._bank.dim}",
            )  # fmt: skip
        last, version = self._call("load", self._stream_tip)
        states = self._class_states(range(self._bank.num_classes))
        if any(seed != meta["seed"] for seed, _, _ in states):
            raise StoreUnavailable("bank", "load", "the bank is being seeded; try again")
        return meta, last, version, states

    def _apply_remote(
        self,
        meta: dict[str, str],
        last: str,
        version: int,
        states: list[tuple[str, str, int]],
        *,
        fresh: bool = True,
    ) -> None:
        """Fetch what the classes' logs hold beyond the local copy (caller holds the lock).
        ``fresh=False``: ``states`` were read without the lock, so a class the local copy holds
        more of was written since (by this replica) and is left as it is."""
        if meta["seed"] != self._seed:
            self._sync = self._pristine_sync(int(meta["rows"]))
            fresh = True
        self._fetch({c: (e, n) for c, (_, e, n) in enumerate(states)}, fresh=fresh)
        self._seed = meta["seed"]
        self._rows = int(meta["rows"])
        self._last_id, self._version, self._stream_v = last, version, version
        self._next_reconcile = time.monotonic() + self.reconcile_interval

    def _stream_tip(self, r: redis.Redis) -> tuple[str, int]:
        pipe = r.pipeline(transaction=True)
        pipe.xrevrange(self.keys.changes, count=1)
        pipe.get(self.keys.version)
        tip, ver = pipe.execute()
        return (_s(tip[0][0]) if tip else "0-0"), int(ver or 0)

    def _class_states(self, classes: Iterable[int]) -> list[tuple[str, str, int]]:
        """(seed, epoch, record count) of each class, 512 classes per pipeline."""
        cs = list(classes)
        out: list[tuple[str, str, int]] = []
        for i in range(0, len(cs), 512):
            part = cs[i : i + 512]

            def read(r: redis.Redis, part: list[int] = part) -> list[Any]:
                pipe = r.pipeline(transaction=False)
                for c in part:
                    self._read(
                        keys=[self.keys.cmeta(c), self.keys.clog(c)], args=[0, 0], client=pipe
                    )
                return pipe.execute()

            out.extend((_s(s), _s(e), int(n)) for s, e, n, _ in self._bulk_call("load", read))
        return out

    def _fetch(self, remote: dict[int, tuple[str, int]], *, fresh: bool = True) -> None:
        """Apply to the local copy what each class's log holds beyond it (remote: c -> (epoch,
        record count)): the new records when the epoch is the same, else the whole log."""
        todo: dict[int, int] = {}
        for c, (epoch, n) in remote.items():
            st = self._sync[c]
            if not fresh and st.epoch == epoch and st.records > n:
                continue  # written here after ``remote`` was read
            if st.epoch == epoch and 0 <= st.records <= n:
                if st.records < n:
                    todo[c] = st.records
            else:
                todo[c] = 0
                self._sync[c] = ClassSync(epoch, 0, 0)
        if not todo:
            return
        changed: dict[int, bc.ClassView] = {}
        page = max(1, PIPELINE_BYTES // max(self.record_bytes, 1))
        while todo:
            batch = self._read_pages(todo, page)
            for c, (epoch, n, recs) in batch.items():
                st = self._sync[c]
                if epoch != st.epoch or todo[c] > n:  # compacted meanwhile: read it all again
                    self._sync[c] = ClassSync(epoch, 0, 0)
                    changed.pop(c, None)
                    todo[c] = 0
                    continue
                base = changed.get(c)
                if base is None:
                    base = self._bank.view(c) if st.records > 0 else bc.empty_view(self._bank.dim)
                view, added = self._apply(base, recs, f"{self.keys.clog(c)}[{todo[c]}:]")
                changed[c] = view
                done = todo[c] + len(recs)
                self._sync[c] = ClassSync(epoch, done, st.stored + added)
                if done >= n:
                    del todo[c]
                else:
                    todo[c] = done
        self._bank = self._bank.with_views(changed)
        self.listener.bank_refreshed(self._bank)

    def _read_pages(
        self, todo: dict[int, int], page: int
    ) -> dict[int, tuple[str, int, list[bytes]]]:
        """One pipeline reading up to ``page`` records (about PIPELINE_BYTES) of up to ``page``
        classes from their offsets."""
        classes = list(todo)[: max(1, page)]
        per = max(1, page // len(classes))

        def read(r: redis.Redis) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for c in classes:
                self._read(
                    keys=[self.keys.cmeta(c), self.keys.clog(c)], args=[todo[c], per], client=pipe
                )
            return pipe.execute()

        out = {}
        for c, (_, epoch, n, recs) in zip(classes, self._bulk_call("refresh", read), strict=True):
            out[c] = (_s(epoch), int(n), list(recs))
        return out

    def _apply(
        self, view: bc.ClassView, blobs: Sequence[bytes], where: str
    ) -> tuple[bc.ClassView, int]:
        """``view`` with records applied in order; returns (view, entries the records added)."""
        added = 0
        cap = self._bank.scan_cap
        for i, blob in enumerate(blobs):
            try:
                rec = decode_record(blob, f"{where}#{i}")
            except ValueError as e:
                self.listener.store_error("bank", "decode")
                raise StoreUnavailable("bank", "decode", str(e)) from None
            view = apply_record(view, rec, cap)
            self.records_read += 1
            added += len(rec) if rec.kind == "add" else 0
        return view, added

    # -------------------------------------------------------------- seeding
    def _seed_bank(self) -> None:
        """Write the local copy as this namespace's bank, unless another replica is doing it."""
        token = uuid.uuid4().hex
        got = self._call("seed", lambda r: r.set(self.keys.lock, token, nx=True, px=30_000))
        if not got:
            return  # another replica is seeding: load its bank at the next round
        try:
            sync = self._write_seed(token)
        finally:
            self._call("seed", lambda r: self._release(keys=[self.keys.lock], args=[token]))
        self._seed, self._sync = token, sync
        self._version = self._stream_v = 0
        self._last_id = "0-0"
        self._next_reconcile = time.monotonic() + self.reconcile_interval

    def _write_seed(self, token: str) -> list[ClassSync]:
        """Every class's records, in pipelines of about PIPELINE_BYTES, then the bank's meta."""
        bank, rows, k = self._bank, self._rows, self.keys
        self._call("seed", lambda r: r.delete(k.meta, k.changes, k.version))
        sync: list[ClassSync] = []
        pending: list[tuple[str, Any]] = []
        size = 0
        for c in range(bank.num_classes):
            view = bank.view(c)
            epoch = BUNDLE_EPOCH if view is self._initial.view(c) else f"s{token}"
            e, lab, st, vids = bc.entries(view)
            recs = add_records(e, lab, st, vids, rows=rows)
            pending.append(("delete", (k.clog(c),)))
            pending.extend(("rpush", (k.clog(c), rec)) for rec in recs)
            pending.append(("hset", (k.cmeta(c), {"seed": token, "epoch": epoch})))
            sync.append(ClassSync(epoch, len(recs), view.live))
            size += sum(len(x) for x in recs) + 200
            if size >= PIPELINE_BYTES or len(pending) >= 2048:
                self._flush(pending, token)
                pending, size = [], 0
        meta = {"seed": token, "rows": rows, "dim": bank.dim, "classes": bank.num_classes}
        pending.append(("hset", (k.meta, meta)))
        self._flush(pending, token)
        return sync

    def _flush(self, commands: list[tuple[str, Any]], token: str) -> None:
        def run(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for name, args in commands:
                if name == "hset":
                    pipe.hset(args[0], mapping=args[1])
                else:
                    getattr(pipe, name)(*args)
            pipe.execute()
            if not self._renew(keys=[self.keys.lock], args=[token, 30_000], client=r):
                raise redis.RedisError("lost the seeding lock")

        self._bulk_call("seed", run)

    # -------------------------------------------------------------- writes
    def _ensure_loaded(self) -> None:
        if self._seed is None:
            self._load()
        if self._seed is None:
            raise StoreUnavailable("bank", "add", "the bank is being seeded; try again")

    def _cas_append(self, c: int, records: list[bytes]) -> ClassSync:
        """Append records to class c's log on top of what the local copy holds (refreshing the
        class and retrying when another replica wrote first); returns the class's sync before."""
        for _ in range(5):
            self._ensure_loaded()
            st = self._sync[c]
            status, _ = self._call(
                "add",
                lambda r, st=st: self._append(
                    keys=[self.keys.cmeta(c), self.keys.clog(c)],
                    args=[self._seed, st.epoch, st.records, *records],
                ),
            )
            if status == 0:
                return st
            if status == -1:  # this class is not in the bank we know: Redis lost it or re-seeded
                self._seed = None
            else:
                self._refresh_classes([c])
        raise StoreUnavailable("bank", "add", f"class {c} kept changing under the write; try again")

    def _after_write(self, c: int, st: ClassSync, records: int, added: int) -> int:
        """Record the write locally, announce it, compact the class's log when due."""
        self._sync[c] = ClassSync(st.epoch, st.records + records, st.stored + added)
        version = self._announce_class(c)
        self._version = max(self._version, version)
        live = self._bank.view(c).live
        if self._sync[c].stored - live > live + self._rows:
            version = self._compact(c) or version
        self.listener.bank_refreshed(self._bank)
        return version

    def _announce_class(self, c: int) -> int:
        st = self._sync[c]
        return int(
            self._call(
                "add",
                lambda r: self._announce(
                    keys=[self.keys.version, self.keys.changes],
                    args=[c, st.records, st.epoch, self.stream_len],
                ),
            )
        )

    def add(self, batch: LabelBatch) -> WriteResult:
        """Put the batch's labelled segments into the bank (a segment already there is relabelled);
        returns once Redis has them (else StoreUnavailable)."""
        c, n = batch.class_id, len(batch.starts)
        emb = unit_rows(batch.embeddings)
        vids = [batch.video_id] * n
        records = add_records(emb, batch.labels, batch.starts, vids, rows=self._rows)
        with self._lock:
            st = self._cas_append(c, records)
            view, replaced = self._bank.put_view(
                c, emb, np.asarray(batch.labels, np.int8), np.asarray(batch.starts, np.int64), vids
            )
            self._bank = self._bank.with_views({c: view})
            version = self._after_write(c, st, len(records), n)
            bank = self._bank
        return WriteResult(version, int(bank.pos_count[c]), int(bank.neg_count[c]), replaced)

    def remove(self, class_id: int, video_id: str, starts: Sequence[int]) -> RemoveResult:
        """Remove labelled segments of one video from one class; NotInBank (nothing removed) when
        any of them is not in the bank."""
        c = class_id
        record = del_record([video_id] * len(starts), starts)
        with self._lock:
            for _ in range(5):
                self._ensure_loaded()
                self._refresh_classes([c])
                found = self._bank.view(c).find(video_id, list(starts))
                missing = [int(s) for s, r in zip(starts, found.tolist(), strict=True) if r < 0]
                if missing:
                    raise NotInBank(c, video_id, missing)
                st = self._sync[c]
                status, _ = self._call(
                    "remove",
                    lambda r, st=st: self._append(
                        keys=[self.keys.cmeta(c), self.keys.clog(c)],
                        args=[self._seed, st.epoch, st.records, record],
                    ),
                )
                if status == 0:
                    break
                if status == -1:
                    self._seed = None
            else:
                raise StoreUnavailable("bank", "remove", f"class {c} kept changing; try again")
            bank, labels = self._bank.remove(c, video_id, list(starts))
            self._bank = bank
            version = self._after_write(c, st, 1, 0)
        return RemoveResult(
            version, [int(x) for x in labels], int(bank.pos_count[c]), int(bank.neg_count[c])
        )

    def _refresh_classes(self, classes: Sequence[int]) -> None:
        states = self._class_states(classes)
        self._fetch({c: (e, n) for c, (_, e, n) in zip(classes, states, strict=True)})

    def _compact(self, c: int) -> int | None:
        """Rewrite class c's log with its live entries (staged under a temporary key, switched in
        by one script); returns the announce version, None when another write came first."""
        st = self._sync[c]
        view = self._bank.view(c)
        e, lab, starts, vids = bc.entries(view)
        records = add_records(e, lab, starts, vids, rows=self._rows)
        token = f"c{uuid.uuid4().hex}"
        staging = self.keys.cnew(c, token)
        for i in range(0, len(records), 16):
            part = records[i : i + 16]

            def stage(r: redis.Redis, part: list[bytes] = part) -> None:
                pipe = r.pipeline(transaction=False)
                pipe.rpush(staging, *part)
                pipe.pexpire(staging, 60_000)
                pipe.execute()

            self._bulk_call("compact", stage)
        n = self._call(
            "compact",
            lambda r: self._switch(
                keys=[self.keys.cmeta(c), self.keys.clog(c), staging],
                args=[self._seed, st.epoch, st.records, token],
            ),
        )
        if int(n) < 0:
            return None
        self._sync[c] = ClassSync(token, int(n), view.live)
        return self._announce_class(c)

    # -------------------------------------------------------------- background
    def _run(self) -> None:
        """Follow the change stream; re-load after a gap, a re-seed or every reconcile interval."""
        block = redis.Redis.from_url(
            self.backend.url,
            socket_timeout=self.poll_interval + 5.0,
            socket_connect_timeout=1.0,
        )
        try:
            while not self._stop.is_set():
                try:
                    self._step(block)
                except (StoreUnavailable, redis.RedisError, OSError):
                    self._stop.wait(max(self.backend.retry_interval, 0.05))
        finally:
            block.close()

    def _step(self, block: redis.Redis) -> None:
        if self._seed is None:
            with self._lock:
                self._load()
            return
        if time.monotonic() >= self._next_reconcile:
            remote = self._read_remote()  # outside the lock: writes go on meanwhile
            with self._lock:
                if remote is None:
                    self._load()
                else:
                    self._apply_remote(*remote, fresh=False)
            return
        got = block.xread(
            {self.keys.changes: self._last_id}, count=256, block=int(self.poll_interval * 1000)
        )
        if self._stop.is_set():
            return
        if not got:
            seed = self._call("poll", lambda r: r.hget(self.keys.meta, "seed"))
            if seed is None or _s(seed) != self._seed:
                with self._lock:
                    self._load()
            return
        with self._lock:
            self._on_changes(got[0][1])

    def _on_changes(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Apply the classes named by stream entries (their new records only)."""
        latest: dict[int, tuple[str, int]] = {}
        gap = False
        for eid, fields in entries:
            f = {_s(k): _s(v) for k, v in fields.items()}
            v = int(f["v"])
            gap = gap or (self._stream_v and v != self._stream_v + 1)
            self._stream_v = v
            latest[int(f["c"])] = (f["e"], int(f["n"]))
            self._last_id = _s(eid)
        if gap:
            self._load()
            return
        stale = [
            c
            for c, (e, n) in latest.items()
            if (self._sync[c].epoch, self._sync[c].records) != (e, n)
        ]
        if stale:
            self._refresh_classes(stale)
        self._version = max(self._version, self._stream_v)  # after the snapshot has the changes

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_interval + 6.0)
        self._bulk.close()
        self.backend.close()


def apply_record(view: bc.ClassView, rec: Record, cap: int) -> bc.ClassView:
    """One class's view with a decoded record applied (``add``: put, ``del``: remove)."""
    if rec.kind == "add":
        assert rec.emb is not None and rec.label is not None
        vh = [bc.video_hash(v) for v in rec.video]
        view, _ = bc.put(view, rec.emb, rec.label, rec.start, rec.video, vh, cap)
        return view
    by_video: dict[str, list[int]] = {}
    for v, s in zip(rec.video, rec.start.tolist(), strict=True):
        by_video.setdefault(v, []).append(int(s))
    for v, ss in by_video.items():
        view, _ = bc.remove(view, v, ss, cap)
    return view
