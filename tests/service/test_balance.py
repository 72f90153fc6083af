"""Connection balance across the workers of ``ccrl serve`` (service.api.balance).

The rule on plain counts, then two real 2-worker servers: all four keep-alive connections of a
client are put on one worker (the other is stopped with SIGSTOP while they connect), and after a
few rounds of requests they are spread 2 and 2, each found by its socket's owner in ``/proc``;
with ``CCRL_BALANCE_CONNECTIONS=false`` they stay where they are.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from service.api.balance import NOT_READY, ConnectionBalance


def _balance(counts: list[int], index: int = 0) -> ConnectionBalance:
    b = ConnectionBalance(counts, index)
    b.open = max(counts[index], 0)
    b.ready()
    return b


def test_a_level_spread_moves_nothing() -> None:
    for counts in ([2, 2], [3, 2], [1, 0], [0, 0], [5, 4, 4]):
        assert not _balance(counts).should_move(), counts


def test_two_more_than_the_least_busy_moves_one_at_a_time() -> None:
    counts = [4, 0]
    b = _balance(counts)
    assert b.should_move()
    b.leave(moved=True)
    assert b.should_move()  # 3 staying against 0 + the 1 on its way
    b.leave(moved=True)
    assert not b.should_move()  # 2 staying, 2 on their way: enough
    assert b.moved == 2
    b.closed(was_leaving=True)
    b.closed(was_leaving=True)
    assert counts == [2, 0] and b.leaving == 0


def test_workers_not_serving_are_left_out() -> None:
    assert not _balance([4, NOT_READY]).should_move()  # the other one is still starting
    assert _balance([4, NOT_READY, 1]).should_move()
    b = _balance([4, 0])
    b.retire()  # this one stops: it moves nothing and counts as not ready for the others
    assert not b.should_move()
    assert b.counts[0] == NOT_READY
    b.opened()
    assert b.counts[0] == NOT_READY


def test_the_cap_counts_as_leaving_without_being_a_move() -> None:
    b = _balance([4, 1])
    b.leave(moved=False)
    assert not b.should_move() and b.moved == 0


# ------------------------------------------------------------------------------ real servers
def _server_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server's end of the loopback connection from ``client_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return fields[9]
    return None


def _owner(conn: http.client.HTTPConnection, server_port: int, workers: list[int]) -> int | None:
    """The worker process holding the server's end of ``conn`` (None: not found)."""
    assert conn.sock is not None
    inode = _server_inode(server_port, conn.sock.getsockname()[1])
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in workers:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def _get(conn: http.client.HTTPConnection) -> bool:
    """One request on ``conn`` (reconnecting when it was closed); True when the answer said
    ``Connection: close``."""
    conn.request("GET", "/v2/health/live")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200
    return resp.getheader("connection", "").lower() == "close"


def _workers_serving(port: int, workers: list[int], timeout: float = 60) -> None:
    """Wait until fresh connections have reached every worker (each one accepts)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while seen != set(workers):
        assert time.monotonic() < deadline, f"only {seen} of {workers} accepted"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        _get(conn)
        owner = _owner(conn, port, workers)
        if owner is not None:
            seen.add(owner)
        conn.close()


def _all_on_one(srv: Any) -> tuple[list[http.client.HTTPConnection], list[int]]:
    """Four keep-alive connections, all accepted by the first worker (the second is stopped)."""
    workers = srv.worker_pids()
    assert len(workers) == 2, workers
    _workers_serving(srv.port, workers)
    os.kill(workers[1], signal.SIGSTOP)
    try:
        conns = [http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10) for _ in range(4)]
        for c in conns:
            c.connect()
        deadline = time.monotonic() + 10  # the first worker accepts them (no request yet)
        while (owners := [_owner(c, srv.port, workers) for c in conns]) != [workers[0]] * 4:
            assert time.monotonic() < deadline, owners
            time.sleep(0.05)
    finally:
        os.kill(workers[1], signal.SIGCONT)
    return conns, workers


def _spread(srv: Any, conns: list[http.client.HTTPConnection], workers: list[int], rounds: int):
    closes = 0
    for _ in range(rounds):
        for c in conns:
            closes += _get(c)
    for c in conns:  # a connection told to close reconnects here
        if c.sock is None:
            _get(c)
    owners = Counter(_owner(c, srv.port, workers) for c in conns)
    return owners, closes


def _stop(srv: Any, conns: list[http.client.HTTPConnection]) -> None:
    for c in conns:
        c.close()
    assert srv.stop() == 0, srv.log()[-3000:]


@pytest.mark.slow
def test_two_workers_spread_four_connections_two_and_two(
    service_bundle: Path, serve_process: Any
) -> None:
    srv = serve_process(service_bundle, workers=2, CCRL_KEEP_ALIVE_REQUESTS="0")
    conns, workers = _all_on_one(srv)
    owners, closes = _spread(srv, conns, workers, rounds=25)
    assert owners == Counter({workers[0]: 2, workers[1]: 2}), (owners, closes)
    assert 2 <= closes <= 25, closes  # at least the two moves; a few more when one lands back
    # once level, nothing moves any more
    owners_after, closes_after = _spread(srv, conns, workers, rounds=10)
    assert closes_after == 0 and owners_after == owners
    _stop(srv, conns)
    moved = re.findall(r"worker \d moved (\d+) connection", srv.log())
    assert sum(int(n) for n in moved) == closes, srv.log()[-3000:]  # each close was a move


@pytest.mark.slow
def test_without_balance_the_connections_stay_put(service_bundle: Path, serve_process: Any) -> None:
    srv = serve_process(
        service_bundle,
        workers=2,
        CCRL_KEEP_ALIVE_REQUESTS="0",
        CCRL_BALANCE_CONNECTIONS="false",
    )
    conns, workers = _all_on_one(srv)
    owners, closes = _spread(srv, conns, workers, rounds=10)
    assert owners == Counter({workers[0]: 4}) and closes == 0, (owners, closes)
    _stop(srv, conns)
