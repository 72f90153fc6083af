"""HTTP load from ``hey`` (Debian's compiled load generator), so that the client's own cost is not
charged to the service the way a Python client's would be.

:func:`run_hey` posts one body file to one URL for a fixed duration from ``concurrency`` workers,
optionally rate-limited (``hey -q`` is queries per second *per worker*), and reads hey's CSV output
(one row per answered request) into a :class:`LoadResult`: throughput and latency percentiles.
``scripts/ensure-bench-deps.sh`` installs hey when it is missing.
"""

from __future__ import annotations

import csv
import io
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtests.serving import cpu_seconds


class HeyMissing(RuntimeError):
    """``hey`` is not on PATH (install it: ``scripts/ensure-bench-deps.sh``)."""


@dataclass
class LoadResult:
    """What one hey run measured. Latencies in milliseconds.

    Attributes:
        concurrency: hey workers (``-c``).
        rate: the total offered rate in requests/s (``-q`` x workers), or None for as fast as
            the service answers.
        ok: answers with status 200.
        errors: answers with another status.
        seconds: from the first request sent to the last answer received.
        throughput: ``ok / seconds``.
        p50_ms, p90_ms, p99_ms, max_ms: latency of the 200 answers.
        client_cpu_s: CPU seconds hey itself used (user + system).
        server_cpu_s: CPU seconds the server used meanwhile, when the caller measured it.
    """

    concurrency: int
    rate: float | None
    ok: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_s: float = 0.0
    server_cpu_s: float = float("nan")

    @property
    def server_cpu_ms(self) -> float:
        """Server CPU milliseconds per answered request."""
        return self.server_cpu_s * 1000.0 / self.ok if self.ok else float("nan")

    @property
    def p99_over_p50(self) -> float:
        return self.p99_ms / self.p50_ms if self.p50_ms > 0 else float("nan")


def hey_path() -> str:
    """The ``hey`` executable; :class:`HeyMissing` when it is not installed."""
    path = shutil.which("hey")
    if path is None:
        raise HeyMissing("hey is not installed: run scripts/ensure-bench-deps.sh (apt-get hey)")
    return path


def parse_csv(text: str, *, concurrency: int, rate: float | None) -> LoadResult:
    """hey's ``-o csv`` output -> :class:`LoadResult` (``response-time`` and ``offset`` in s)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    rt = np.asarray([float(r["response-time"]) for r in rows], dtype=np.float64)
    offset = np.asarray([float(r["offset"]) for r in rows], dtype=np.float64)
    status = np.asarray([int(r["status-code"]) for r in rows], dtype=np.int64)
    good = status == 200
    seconds = float((offset + rt).max() - offset.min()) if rows else 0.0
    ms = rt[good] * 1000.0
    p50, p90, p99, top = (
        (float(np.percentile(ms, q)) for q in (50, 90, 99, 100)) if ms.size else (float("nan"),) * 4
    )
    ok = int(good.sum())
    return LoadResult(
        concurrency=concurrency,
        rate=rate,
        ok=ok,
        errors=int((~good).sum()),
        seconds=seconds,
        throughput=ok / seconds if seconds > 0 else 0.0,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        max_ms=top,
    )


def run_hey(
    url: str,
    body: Path,
    *,
    concurrency: int,
    seconds: float,
    rate: float | None = None,
    timeout_s: int = 20,
    server_pid: int | None = None,
) -> LoadResult:
    """POST ``body`` (a file of JSON) to ``url`` for ``seconds`` from ``concurrency`` workers.

    Args:
        rate: total requests/s to offer (split evenly over the workers); None = unlimited.
        timeout_s: hey's per-request timeout.
        server_pid: measure this process's CPU time (and its children's) during the run.
    """
    cmd = [hey_path(), "-z", f"{seconds:g}s", "-c", str(concurrency), "-t", str(timeout_s)]
    if rate is not None:
        cmd += ["-q", f"{rate / concurrency:.3f}"]
    cmd += ["-m", "POST", "-T", "application/json", "-D", str(body), "-o", "csv", url]
    server_before = cpu_seconds(server_pid) if server_pid else float("nan")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 30, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_after = cpu_seconds(server_pid) if server_pid else float("nan")
    if proc.returncode != 0:
        raise RuntimeError(f"hey exited with {proc.returncode}: {proc.stderr[-2000:]}")
    result = parse_csv(proc.stdout, concurrency=concurrency, rate=rate)
    result.server_cpu_s = server_after - server_before
    result.client_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.ok == 0:
        raise RuntimeError(f"hey got no 200 answer from {url}: {proc.stdout[-1000:]}")
    return result
