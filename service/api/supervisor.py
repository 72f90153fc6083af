"""Running the workers of ``ccrl serve``: one in-process server, or a master and N workers.

uvicorn's own master (``workers > 1``) does two things wrong for this service: SIGHUP is a rolling
restart that gives each new worker a fixed health-check window (a bundle that loads for longer
aborts the restart: "New child process was not ready in time"), and on SIGTERM it keeps its copy
of the listening socket open until every worker has exited, so the kernel goes on completing
connections that no worker will ever accept (reset when the master exits). This master:

- binds the socket, starts ``workers`` spawned processes, each a :class:`GracefulServer` on it,
  and starts a new one when a worker dies (a worker that fails at start-up stops everything);
- a worker gets SIGTERM when the master dies, even by SIGKILL (Linux ``PR_SET_PDEATHSIG``), so it
  drains and exits instead of serving on, unsupervised;
- shares one slot per worker with them for their connection counts, which they keep level
  (:mod:`service.api.balance`, unless ``balance`` is off);
- SIGHUP: publishes a reload in the control folder; every worker reloads in place
  (:mod:`service.api.reload`), nothing restarts;
- SIGTERM / SIGINT: closes its own copy of the socket first, then sends SIGTERM to every worker
  (each drains, :mod:`service.api.shutdown`), waits up to the grace period plus a margin, kills
  what is left and exits 0 when every worker did.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from service.api import balance
from service.api.control import ControlFolder, control_dir
from service.api.reload import hangup
from service.api.shutdown import GracefulServer

log = logging.getLogger("ccrl.supervisor")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
"""The format of the service's own log lines (``ccrl.*``), in the master and every worker."""

PR_SET_PDEATHSIG = 1
"""prctl(2): the signal a process gets when its parent dies."""

KILL_MARGIN_S = 5.0
"""Extra seconds a worker gets past the grace period before it is killed."""


@dataclass(frozen=True)
class ShutdownTimes:
    """The shutdown periods of every worker (seconds)."""

    grace_s: float
    drain_s: float


def _worker(
    config: uvicorn.Config,
    sockets: list[socket.socket],
    times: ShutdownTimes,
    counts: Any | None,
    index: int,
    master: int,
) -> None:
    """The body of one spawned worker process (``counts``: the shared connection counts, or None
    without balance; ``index``: this worker's slot; ``master``: the master's pid)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)  # spawned: nothing is inherited
    config.configure_logging()
    _die_with(master)
    balance.install(counts, index)
    GracefulServer(config, grace_s=times.grace_s, drain_s=times.drain_s).run(sockets=sockets)


def _die_with(master: int) -> None:
    """Ask Linux for SIGTERM when the master dies (no-op elsewhere); exit now if it already did."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != master:
        log.error("the master (%d) is gone: exiting", master)
        raise SystemExit(1)


class Supervisor:
    """The master process of several workers (see the module docstring)."""

    def __init__(
        self, config: uvicorn.Config, workers: int, times: ShutdownTimes, *, balanced: bool = True
    ) -> None:
        self.config = config
        self.workers = workers
        self.times = times
        self.procs: list[BaseProcess] = []
        self._exit = threading.Event()
        self._hup = threading.Event()
        self._ctx = multiprocessing.get_context("spawn")
        self.counts = self._ctx.RawArray("l", [balance.NOT_READY] * workers) if balanced else None

    def _spawn(self, sock: socket.socket, index: int) -> BaseProcess:
        if self.counts is not None:
            self.counts[index] = balance.NOT_READY  # a dead worker's connections are gone
        proc = self._ctx.Process(
            target=_worker,
            args=(self.config, [sock], self.times, self.counts, index, os.getpid()),
        )
        proc.start()
        log.info("started worker %s", proc.pid)
        return proc

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        (self._hup if sig == signal.SIGHUP else self._exit).set()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status (0: every worker stopped cleanly)."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        sock = self.config.bind_socket()
        self.procs = [self._spawn(sock, i) for i in range(self.workers)]
        self._expect()
        failed = False
        while not self._exit.wait(0.25):
            if self._hup.is_set():
                self._hup.clear()
                hangup()
            failed = self._replace_dead(sock)
            if failed:
                break
        sock.close()  # stop accepting here first: the workers close their copies next
        return self._stop() if not failed else 1

    def _replace_dead(self, sock: socket.socket) -> bool:
        """Start a new worker for each dead one; True when one failed at start-up."""
        for i, proc in enumerate(self.procs):
            if proc.is_alive():
                continue
            proc.join()
            if proc.exitcode == STARTUP_FAILURE:
                log.error("worker %s failed to start: stopping", proc.pid)
                return True
            log.warning("worker %s exited (%s): starting another", proc.pid, proc.exitcode)
            self.procs[i] = self._spawn(sock, i)
            self._expect()
        return False

    def _expect(self) -> None:
        """Tell the workers who they are (a reload waits for each, :mod:`service.api.reload`)."""
        path = control_dir()
        if path is not None:
            ControlFolder(path).expect([p.pid for p in self.procs if p.pid is not None])

    def _stop(self) -> int:
        for proc in self.procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.times.grace_s + KILL_MARGIN_S
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %s still running after the grace period: killed", proc.pid)
                proc.kill()
                proc.join()
        codes = [proc.exitcode for proc in self.procs]
        log.info("workers stopped with %s", codes)
        return 0 if all(c == 0 for c in codes) else 1


def serve(
    app: str, *, workers: int, times: ShutdownTimes, balanced: bool = True, **options: Any
) -> int:
    """Run ``app`` (an import string) with uvicorn ``options``; returns the exit status
    (``balanced``: several workers keep their connection counts level)."""
    config = uvicorn.Config(
        app, workers=workers, timeout_graceful_shutdown=int(times.grace_s), **options
    )
    if workers == 1:
        GracefulServer(config, grace_s=times.grace_s, drain_s=times.drain_s).run()
        return 0
    return Supervisor(config, workers, times, balanced=balanced).run()
