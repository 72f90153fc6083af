"""The per-class Redis bank with real redis-servers: replicas see writes, relabels and removals
identically; a server that refuses values over 1 MB still seeds and serves a bigger bank; a replica
started after many writes reads a bounded log; every acknowledged write survives a restart (AOF)."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from service.bank import ClassBank, NotInBank
from service.bank_records import decode_record
from service.stores.base import LabelBatch, StoreUnavailable
from service.stores.redis import RedisBackend
from service.stores.redis_bank import RedisBankStore

C = 5


class PrivateRedis:
    """A redis-server of this test on a free port (extra flags, its own folder), stopped by PID."""

    def __init__(self, folder: Path, *flags: str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (scripts/ensure-redis.sh installs it)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        folder.mkdir(parents=True, exist_ok=True)
        self.cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(folder)]
        self.cmd += ["--save", "", *flags]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on {self.port}") from None
                time.sleep(0.05)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=20)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., PrivateRedis]]:
    servers: list[PrivateRedis] = []

    def start(*flags: str) -> PrivateRedis:
        srv = PrivateRedis(tmp_path / f"redis{len(servers)}", *flags)
        srv.start()
        servers.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in servers:
            srv.kill()


def bank_of(n: int, d: int, seed: int = 0) -> ClassBank:
    rng = np.random.default_rng(seed)
    return ClassBank.from_entries(
        rng.normal(size=(n, d)).astype(np.float32),
        rng.integers(0, C, n),
        rng.integers(0, 2, n),
        [f"v{i % max(n // 6, 1)}" for i in range(n)],
        (np.arange(n) // max(n // 6, 1)) * 5,
        num_classes=C,
    )


def store(url: str, bank: ClassBank, **kw: object) -> RedisBankStore:
    be = RedisBackend(url, namespace="t", timeout=2.0, retry_interval=0.1)
    return RedisBankStore(be, bank, poll_interval=0.05, **kw)  # type: ignore[arg-type]


def batch(c: int, video: str, starts: list[int], label: int, d: int, seed: int = 0) -> LabelBatch:
    rng = np.random.default_rng(seed)
    n = len(starts)
    return LabelBatch(
        c,
        video,
        np.asarray(starts, np.int64),
        np.full(n, label, np.int8),
        rng.normal(size=(n, d)).astype(np.float32),
    )


def same_bank(a: ClassBank, b: ClassBank) -> bool:
    """The same live entries (in any order) and the same sums."""

    def key(bank: ClassBank) -> list[tuple[int, str, int, int]]:
        return sorted(
            zip(
                bank.emb_class.tolist(),
                bank.emb_video.tolist(),
                bank.emb_start.tolist(),
                bank.emb_label.tolist(),
                strict=True,
            )
        )

    return key(a) == key(b) and bool(np.allclose(a.pos_sum, b.pos_sum, atol=1e-4))


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.redis
def test_two_replicas_see_writes_relabels_and_removals_identically(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    srv = private_redis("--appendonly", "no")
    d = 16
    initial = bank_of(120, d)
    a, b = store(srv.url, initial), store(srv.url, initial)
    try:
        assert a._seed is not None and a._seed == b._seed
        res = a.add(batch(3, "new", [0, 5, 10], 1, d))
        assert (res.version, res.positive) == (1, int(initial.pos_count[3]) + 3)
        wait_for(lambda: b.version() == 1, "replica b to see the add")
        assert same_bank(a.snapshot(), b.snapshot())
        res = b.add(batch(3, "new", [5], 0, d, seed=1))  # relabel through the other replica
        assert (res.positive, res.negative) == (
            int(initial.pos_count[3]) + 2,
            int(initial.neg_count[3]) + 1,
        )
        wait_for(lambda: a.version() == 2, "replica a to see the relabel")
        assert same_bank(a.snapshot(), b.snapshot())
        gone = a.remove(3, "new", [0, 5])
        assert gone.labels == [1, 0] and gone.version == 3
        wait_for(lambda: b.version() == 3, "replica b to see the removal")
        assert same_bank(a.snapshot(), b.snapshot())
        with pytest.raises(NotInBank, match="no label for video 'new' at start 0"):
            b.remove(3, "new", [0, 10])
        assert b.snapshot().pos_count[3] == a.snapshot().pos_count[3]  # nothing was removed
        late = store(srv.url, initial)  # a third replica loads seed + changes
        try:
            assert late.version() == 3 and same_bank(late.snapshot(), a.snapshot())
        finally:
            late.close()
    finally:
        a.close()
        b.close()


@pytest.mark.redis
def test_a_bank_bigger_than_the_servers_largest_value_seeds_and_serves(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    srv = private_redis("--appendonly", "no", "--proto-max-bulk-len", "1mb")
    d = 256
    initial = bank_of(3000, d)  # 3 MB of embeddings, about 600 KB per class
    r = redis.Redis.from_url(srv.url)
    with pytest.raises((redis.ResponseError, redis.ConnectionError)):  # refuses a value > 1 MB
        r.set("too-big", b"x" * (1 << 20) + b"x")
    a = store(srv.url, initial, record_bytes=256 * 1024)
    try:
        biggest = max(len(v) for k in r.scan_iter("*:log") for v in r.lrange(k, 0, -1))
        assert biggest <= 256 * 1024
        sizes = [sum(len(v) for v in r.lrange(a.keys.clog(c), 0, -1)) for c in range(C)]
        assert max(sizes) > 400_000 and sum(sizes) > 3 * 10**6  # the bank really is in Redis
        big = batch(1, "big", list(range(0, 5 * 400, 5)), 1, d)  # one write bigger than 256 KB
        a.add(big)
        fresh = RedisBankStore(
            RedisBackend(srv.url, namespace="t", timeout=2.0), initial, background=False
        )
        try:
            assert same_bank(fresh.snapshot(), a.snapshot())
            seeded = math.ceil(initial.view(1).live / a._rows)
            assert r.llen(a.keys.clog(1)) - seeded == 2  # the write, in two records
            assert fresh.records_read == 2  # only the write: the rest is the bundle's own bank
        finally:
            fresh.close()
        r.hset(a.keys.cmeta(1), "epoch", "other")  # as if compacted elsewhere: read it all
        again = RedisBankStore(
            RedisBackend(srv.url, namespace="t", timeout=2.0), initial, background=False
        )
        try:
            assert same_bank(again.snapshot(), a.snapshot())
            assert again.records_read == r.llen(a.keys.clog(1))
        finally:
            again.close()
    finally:
        a.close()


@pytest.mark.redis
def test_a_replica_started_after_many_writes_reads_a_bounded_log(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    srv = private_redis("--appendonly", "no")
    d = 8
    initial = bank_of(60, d)
    a = store(srv.url, initial, record_bytes=2048, stream_len=50)
    rows = a._rows
    try:
        for i in range(600):  # churn: the same 3 segments relabelled over and over
            a.add(batch(2, "churn", [0, 5, 10], i % 2, d, seed=i))
        r = redis.Redis.from_url(srv.url)
        live = a.snapshot().view(2).live
        llen = r.llen(a.keys.clog(2))
        assert llen <= live + rows + 2, (llen, live, rows)  # compacted, not 600 records
        assert r.xlen(a.keys.changes) <= 50
        assert a.version() >= 600
        late = store(srv.url, initial, record_bytes=2048)
        try:
            assert same_bank(late.snapshot(), a.snapshot())
            assert late.records_read <= llen
        finally:
            late.close()
    finally:
        a.close()


@pytest.mark.redis
def test_every_acknowledged_write_survives_a_redis_restart_with_aof(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    srv = private_redis("--appendonly", "yes", "--appendfsync", "always")
    d = 8
    initial = bank_of(60, d)
    a = store(srv.url, initial)
    acked: dict[tuple[int, str, int], int] = {}
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            c, label = i % C, (i // C) % 2
            try:
                a.add(batch(c, f"w{i}", [0, 5], label, d, seed=i))
            except StoreUnavailable:
                return
            acked[(c, f"w{i}", 0)] = acked[(c, f"w{i}", 5)] = label
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    wait_for(lambda: len(acked) >= 200, "200 acknowledged label writes")
    srv.kill(signal.SIGKILL)  # no shutdown: only what was fsynced survives
    stop.set()
    t.join(timeout=30)
    a.close()
    srv.start()
    b = store(srv.url, initial)
    try:
        snap = b.snapshot()
        have = {
            (c, v, s): lab
            for c, v, s, lab in zip(
                snap.emb_class.tolist(),
                snap.emb_video.tolist(),
                snap.emb_start.tolist(),
                snap.emb_label.tolist(),
                strict=True,
            )
        }
        lost = [k for k, lab in acked.items() if have.get(k) != lab]
        assert not lost, f"{len(lost)} acknowledged entries lost, e.g. {lost[:3]}"
    finally:
        b.close()


@pytest.mark.redis
def test_records_are_raw_arrays_with_a_header(private_redis: Callable[..., PrivateRedis]) -> None:
    srv = private_redis("--appendonly", "no")
    a = store(srv.url, bank_of(30, 8))
    try:
        a.add(batch(0, "x", [0, 5], 1, 8))
        r = redis.Redis.from_url(srv.url)
        blob = r.lrange(a.keys.clog(0), -1, -1)[0]
        rec = decode_record(blob, "log")
        assert rec.kind == "add" and rec.video == ["x", "x"] and rec.start.tolist() == [0, 5]
        assert b"pickle" not in blob and blob[:4] == b"CCRB"
        assert all(k.count(b"{") == 1 for k in r.keys("*bank*"))  # every key is hash-tagged
        tags = {k[k.index(b"{") : k.index(b"}") + 1] for k in r.keys("*bank:0}*")}
        assert len(tags) == 1  # one class: one cluster slot
    finally:
        a.close()
