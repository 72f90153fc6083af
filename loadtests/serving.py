"""A real ``ccrl serve`` for the benchmarks: a subprocess on a free 127.0.0.1 port, ready
(``/readyz`` 200) when the context is entered, stopped (SIGINT, then SIGKILL) when it is left.

The server gets none of this process's ``CCRL_*`` / ``REDIS_URL`` variables, only ``env``: it runs
on the defaults of :mod:`service.config` unless the caller says otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Served:
    """A running server: its base URL and the pid of its process (the worker when it is one)."""

    url: str
    pid: int


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its live children (the uvicorn workers)."""
    tick = os.sysconf("SC_CLK_TCK")

    def own(p: int) -> tuple[float, int]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0, -1
        return (int(fields[11]) + int(fields[12])) / tick, int(fields[1])

    total = own(pid)[0]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != pid:
            seconds, parent = own(int(entry.name))
            if parent == pid:
                total += seconds
    return total


def server_env(env: dict[str, str] | None) -> dict[str, str]:
    """This process's environment without ``CCRL_*`` and ``REDIS_URL``, plus ``env``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("CCRL_") and k != "REDIS_URL"}
    out.update(env or {})
    return out


def _wait_ready(url: str, proc: subprocess.Popen[bytes], startup_s: float, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + startup_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"ccrl serve exited with {proc.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/readyz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"ccrl serve not ready after {startup_s:.0f} s:\n{tail}")
            time.sleep(0.2)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop a ``ccrl serve`` process: SIGINT (its graceful shutdown), then a kill after 15 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextlib.contextmanager
def serve(
    bundle: Path,
    *,
    env: dict[str, str] | None = None,
    workers: int | None = None,
    startup_s: float = 90.0,
) -> Iterator[Served]:
    """``ccrl serve --bundle BUNDLE`` on a free port with ``env`` (``workers`` None: default)."""
    port = free_port()
    cmd = [sys.executable, "-m", "ccrl", "serve", "--bundle", str(bundle)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    fd, name = tempfile.mkstemp(prefix="ccrl-bench-serve-", suffix=".log")
    log = Path(name)
    url = f"http://127.0.0.1:{port}"
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(cmd, env=server_env(env), stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_ready(url, proc, startup_s, log)
            yield Served(url, proc.pid)
        finally:
            stop_server(proc)
            log.unlink(missing_ok=True)
