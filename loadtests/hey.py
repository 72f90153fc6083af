"""HTTP load from ``hey`` (Debian's compiled load generator), so that the client's own cost is not
charged to the service the way a Python client's would be.

:func:`run_hey` posts one body file to one URL for a fixed duration from ``concurrency`` workers as
fast as the service answers. :func:`run_paced` offers a fixed rate instead: ``streams`` hey
processes of one worker each (``hey -q`` is queries per second *per worker*), started 1/rate apart
so that their requests interleave evenly instead of arriving in bursts. Both read hey's CSV output
(one row per answered request) into a :class:`LoadResult`. ``scripts/ensure-bench-deps.sh``
installs hey when it is missing.
"""

from __future__ import annotations

import csv
import io
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from loadtests.serving import cpu_seconds

F64 = npt.NDArray[np.float64]


class HeyMissing(RuntimeError):
    """``hey`` is not on PATH (install it: ``scripts/ensure-bench-deps.sh``)."""


@dataclass
class LoadResult:
    """What one load run measured. Latencies in milliseconds.

    Attributes:
        concurrency: requests in flight at most (hey workers, or paced streams).
        rate: the offered rate in requests/s, or None for as fast as the service answers.
        ok: answers with status 200.
        errors: answers with another status.
        seconds: from the first request sent to the last answer received.
        throughput: ``ok / seconds``.
        p50_ms, p90_ms, p99_ms, max_ms: latency of the 200 answers.
        client_cpu_s: CPU seconds hey itself used (user + system).
        server_cpu_s: CPU seconds the server used meanwhile, when the caller asked for it.
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


def read_csv(text: str) -> tuple[F64, F64, npt.NDArray[np.int64]]:
    """hey's ``-o csv`` output -> (response seconds, start offset seconds, status) per request."""
    rows = list(csv.DictReader(io.StringIO(text)))
    rt = np.asarray([float(r["response-time"]) for r in rows], dtype=np.float64)
    offset = np.asarray([float(r["offset"]) for r in rows], dtype=np.float64)
    status = np.asarray([int(r["status-code"]) for r in rows], dtype=np.int64)
    return rt, offset, status


def window_p50s(
    rt: F64, offset: F64, status: npt.NDArray[np.int64], window_s: float = 1.0
) -> list[float]:
    """The median latency (ms) of the good answers sent in each whole ``window_s`` of a run: how
    much the machine's own speed moved during it (the same load, second after second)."""
    good = (status >= 200) & (status < 300)
    if not good.any():
        return []
    t, ms = offset[good] - offset[good].min(), rt[good] * 1000.0
    out = []
    for k in range(int(t.max() // window_s)):
        inside = (t >= k * window_s) & (t < (k + 1) * window_s)
        if inside.sum() >= 10:
            out.append(float(np.median(ms[inside])))
    return out


def summarize(
    rt: F64, offset: F64, status: npt.NDArray[np.int64], *, concurrency: int, rate: float | None
) -> LoadResult:
    """Throughput and latency percentiles of the requests (see :func:`read_csv`)."""
    good = (status >= 200) & (status < 300)
    seconds = float((offset + rt).max() - offset.min()) if rt.size else 0.0
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


def _command(
    url: str,
    body: Path,
    *,
    workers: int,
    seconds: float,
    qps: float | None,
    headers: dict[str, str] | None = None,
) -> list[str]:
    cmd = [hey_path(), "-z", f"{seconds:g}s", "-c", str(workers), "-t", "20"]
    if qps is not None:
        cmd += ["-q", f"{qps:.3f}"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    return [*cmd, "-m", "POST", "-T", "application/json", "-D", str(body), "-o", "csv", url]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_hey(
    url: str,
    body: Path,
    *,
    concurrency: int,
    seconds: float,
    server_pid: int | None = None,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """POST ``body`` (a file of JSON) to ``url`` for ``seconds`` from ``concurrency`` workers.

    ``server_pid``: also measure that process's CPU time (and its children's) during the run.
    ``headers``: extra request headers (e.g. ``Authorization``).
    """
    cmd = _command(url, body, workers=concurrency, seconds=seconds, qps=None, headers=headers)
    server0, client0 = cpu_seconds(server_pid) if server_pid else 0.0, _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    client1 = _children_cpu()
    if proc.returncode != 0:
        raise RuntimeError(f"hey exited with {proc.returncode}: {proc.stderr[-2000:]}")
    result = summarize(*read_csv(proc.stdout), concurrency=concurrency, rate=None)
    if result.ok == 0:
        raise RuntimeError(f"hey got no 200 answer from {url}: {proc.stdout[-1000:]}")
    result.client_cpu_s = client1 - client0
    if server_pid:
        result.server_cpu_s = cpu_seconds(server_pid) - server0
    return result


class PacedLoad:
    """``bodies`` POSTed to ``url`` in the background, one one-worker hey process per body, started
    ``1 / rate`` s apart: at ``rate`` requests/s in all (each process ``rate / len(bodies)``), or
    as fast as answered when ``rate`` is None. A context manager: the processes start on entry;
    on exit they are waited for, :attr:`result` summarizes every answer and
    :attr:`window_p50_ms` holds the median latency of each whole second (:func:`window_p50s`)."""

    def __init__(
        self,
        url: str,
        bodies: list[Path],
        *,
        rate: float | None,
        seconds: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        if (rate is not None and rate <= 0) or not bodies:
            raise ValueError(f"need rate > 0 (or None) and a body, got {rate}, {len(bodies)}")
        self.url, self.bodies, self.rate, self.seconds = url, bodies, rate, seconds
        self.headers = headers
        self.result: LoadResult | None = None
        self.window_p50_ms: list[float] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._starts: list[float] = []

    def __enter__(self) -> PacedLoad:
        qps = None if self.rate is None else self.rate / len(self.bodies)
        self._client0 = _children_cpu()
        t0 = time.perf_counter()
        gap = 1.0 / self.rate if self.rate else 0.0
        for body in self.bodies:
            cmd = _command(
                self.url, body, workers=1, seconds=self.seconds, qps=qps, headers=self.headers
            )
            self._starts.append(time.perf_counter() - t0)
            self._procs.append(
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            )
            time.sleep(gap)
        return self

    def __exit__(self, *exc: object) -> None:
        parts = []
        for proc, start in zip(self._procs, self._starts, strict=True):
            out, err = proc.communicate(timeout=self.seconds + 60)
            if proc.returncode != 0:
                raise RuntimeError(f"hey exited with {proc.returncode}: {err.decode()[-2000:]}")
            rt, offset, status = read_csv(out.decode())
            parts.append((rt, offset + start, status))
        rt, offset, status = (np.concatenate([p[i] for p in parts]) for i in range(3))
        self.window_p50_ms = window_p50s(rt, offset, status)
        result = summarize(rt, offset, status, concurrency=len(self.bodies), rate=self.rate)
        result.client_cpu_s = _children_cpu() - self._client0
        if result.ok == 0 and exc[0] is None:
            raise RuntimeError(f"hey got no 2xx answer from {self.url}")
        self.result = result


def run_paced(url: str, body: Path, *, rate: float, streams: int, seconds: float) -> LoadResult:
    """Offer ``rate`` requests/s for ``seconds``: ``streams`` one-worker hey processes at
    ``rate / streams`` each, started ``1 / rate`` s apart (at most ``streams`` in flight)."""
    if rate <= 0 or streams < 1:
        raise ValueError(f"need rate > 0 and streams >= 1, got {rate}, {streams}")
    load = PacedLoad(url, [body] * streams, rate=rate, seconds=seconds)
    with load:
        pass
    assert load.result is not None
    return load.result
