"""Soak test: a steady bounded load on a real ``ccrl serve`` for N minutes, window by window.

    python -m loadtests.soak --bundle models/demo [--minutes 5] [--concurrency 4] [--window-s 10]
    make soak                     # the demo bundle, SOAK_MINUTES (default 5)

``ccrl serve`` runs as a subprocess on a free 127.0.0.1 port (embedded store, one worker, one
thread per stage); ``--concurrency`` client threads, each on its own keep-alive connection, post
``/localize`` bodies of random videos (base64 uint8, no ``video_id``: nothing grows in the index)
until the time is up (and never more than ``--max-requests``). Every ``--window-s`` seconds a
window closes with its requests, errors, p50 / p99 latency and the server's resident memory (the
whole process tree, from /proc). The report is a markdown table (printed, and ``soak.md``), the
windows as JSON (``soak.json``) and a PNG of latency and memory over time (``soak.png``), all in
``--out``.

The exit status is 1 on any error (a non-200 answer or a failed connection), or when the resident
memory of the last window exceeds the first window's by more than ``--max-rss-growth-mb``
(the first window is the warm-up baseline); else 0.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.bench_service import ensure_bundle, running_server
from loadtests.payloads import PayloadPool, random_videos

JSON = {"content-type": "application/json"}


@dataclass
class Window:
    """One window of the soak: its end (seconds since the start) and what happened in it."""

    end_s: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    rss_mb: float


@dataclass
class Samples:
    """What the client threads recorded, shared under a lock: (done at, latency s, ok)."""

    rows: list[tuple[float, float, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    first_error: str = ""

    def add(self, done: float, latency: float, ok: bool, error: str = "") -> None:
        with self.lock:
            self.rows.append((done, latency, ok))
            if error and not self.first_error:
                self.first_error = error

    def between(self, lo: float, hi: float) -> list[tuple[float, float, bool]]:
        with self.lock:
            return [r for r in self.rows if lo <= r[0] < hi]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, MiB (Linux /proc)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            status = Path(f"/proc/{p}/status").read_text()
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        rss = [line for line in status.splitlines() if line.startswith("VmRSS:")]
        total += int(rss[0].split()[1]) if rss else 0
        todo += [int(k) for k in kids]
    return total / 1024.0


def client(url: str, bodies: list[bytes], stop: threading.Event, cap: int, out: Samples) -> None:
    """Post bodies until ``stop`` or ``cap`` requests; record every answer."""
    import httpx

    rnd = random.Random(threading.get_ident())
    with httpx.Client(timeout=30) as c:
        for _ in range(cap):
            if stop.is_set():
                return
            t = time.monotonic()
            try:
                r = c.post(f"{url}/localize", content=rnd.choice(bodies), headers=JSON)
                ok, error = r.status_code == 200, "" if r.status_code == 200 else r.text[:200]
            except httpx.HTTPError as e:
                ok, error = False, f"{type(e).__name__}: {e}"
            done = time.monotonic()
            out.add(done, done - t, ok, error)


def close_window(samples: Samples, lo: float, hi: float, start: float, rss_mb: float) -> Window:
    """The statistics of the answers that came in ``[lo, hi)``."""
    rows = samples.between(lo, hi)
    lat = np.asarray([r[1] for r in rows if r[2]], dtype=np.float64) * 1000.0
    p50, p99 = np.percentile(lat, [50, 99]).tolist() if lat.size else [float("nan")] * 2
    errors = sum(1 for r in rows if not r[2])
    return Window(round(hi - start, 2), len(rows), errors, round(p50, 2), round(p99, 2), rss_mb)


def verdict(windows: Sequence[Window], max_growth_mb: float) -> list[str]:
    """Why the soak failed (empty when it passed): errors, or memory growth past the limit."""
    problems = []
    errors = sum(w.errors for w in windows)
    if errors:
        problems.append(f"{errors} failed request(s)")
    if not windows or sum(w.requests for w in windows) == 0:
        problems.append("no request was answered")
    elif len(windows) >= 2:
        growth = windows[-1].rss_mb - windows[0].rss_mb
        if growth > max_growth_mb:
            problems.append(
                f"resident memory grew by {growth:.1f} MiB (limit {max_growth_mb:g} MiB): "
                f"{windows[0].rss_mb:.1f} -> {windows[-1].rss_mb:.1f}"
            )
    return problems


def format_table(windows: Sequence[Window]) -> str:
    rows = ["| window end (s) | requests | errors | p50 (ms) | p99 (ms) | RSS (MiB) |"]
    rows.append("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for w in windows:
        rows.append(
            f"| {w.end_s:.1f} | {w.requests} | {w.errors} | {w.p50_ms:.1f} | {w.p99_ms:.1f} "
            f"| {w.rss_mb:.1f} |"
        )
    return "\n".join(rows)


def plot(windows: Sequence[Window], path: Path) -> None:
    """Latency (p50, p99) and resident memory per window, errors marked in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [w.end_s for w in windows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax1.plot(t, [w.p50_ms for w in windows], marker="o", label="p50")
    ax1.plot(t, [w.p99_ms for w in windows], marker="o", label="p99")
    bad = [w for w in windows if w.errors]
    if bad:
        ax1.scatter([w.end_s for w in bad], [w.p99_ms for w in bad], c="red", label="errors")
    ax1.set_ylabel("latency (ms)")
    ax1.legend()
    ax2.plot(t, [w.rss_mb for w in windows], marker="o", color="tab:green")
    ax2.set_ylabel("server RSS (MiB)")
    ax2.set_xlabel("seconds since the start")
    fig.suptitle("ccrl soak: /localize under a steady load")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def soak(url: str, pid: int, bodies: list[bytes], args: argparse.Namespace) -> list[Window]:
    """Run the clients for ``args.seconds`` and close a window every ``args.window_s``."""
    samples, stop = Samples(), threading.Event()
    cap = max(1, args.max_requests // args.concurrency)
    threads = [
        threading.Thread(target=client, args=(url, bodies, stop, cap, samples), daemon=True)
        for _ in range(args.concurrency)
    ]
    start = time.monotonic()
    for th in threads:
        th.start()
    windows, lo = [], start
    try:
        while lo - start < args.seconds - 1e-6:
            hi = min(lo + args.window_s, start + args.seconds)
            time.sleep(max(0.0, hi - time.monotonic()))
            windows.append(close_window(samples, lo, hi, start, round(tree_rss_mb(pid), 1)))
            print(format_table(windows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
            lo = hi
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=60)
    if samples.first_error:
        print(f"first error: {samples.first_error}", file=sys.stderr)
    return windows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.soak", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, default=None, help="bundle (default: a tiny one)")
    p.add_argument("--minutes", type=float, default=5.0, help="how long (default 5)")
    p.add_argument("--seconds", type=float, default=None, help="how long, overrides --minutes")
    p.add_argument("--window-s", type=float, default=10.0, help="window length (default 10)")
    p.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="upper bound in all")
    p.add_argument("--max-rss-growth-mb", type=float, default=64.0, help="memory growth limit")
    p.add_argument("--videos", type=int, default=16, help="distinct random videos")
    p.add_argument("--out", type=Path, default=Path("loadtests/results/soak"), help="report dir")
    p.add_argument("--workdir", type=Path, default=Path("runs/soak"), help="for the tiny bundle")
    args = p.parse_args(argv)
    args.seconds = args.seconds if args.seconds is not None else args.minutes * 60.0
    if not (0 < args.seconds <= 24 * 3600 and 0 < args.window_s and 1 <= args.concurrency <= 64):
        p.error("need 0 < duration <= 24 h, window > 0 and 1..64 clients")
    return args


def run(argv: Sequence[str] | None = None) -> tuple[list[Window], list[str]]:
    """The soak itself; returns (windows, problems) and writes the report."""
    args = parse_args(argv)
    bundle = ensure_bundle(args.bundle, args.workdir, seed=0)
    videos = random_videos(args.videos, min_frames=60, max_frames=300, seed=1)
    bodies = PayloadPool.build(videos, ("b64",)).bodies["b64"]
    started: list[Any] = []
    with running_server(bundle, threads=1, scoring_slots=2, started=started) as url:
        windows = soak(url, started[0].pid, bodies, args)
    problems = verdict(windows, args.max_rss_growth_mb)
    args.out.mkdir(parents=True, exist_ok=True)
    table = format_table(windows)
    (args.out / "soak.md").write_text(table + "\n", encoding="utf-8")
    report = {"seconds": args.seconds, "concurrency": args.concurrency, "problems": problems}
    report["windows"] = [asdict(w) for w in windows]
    (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(windows, args.out / "soak.png")
    print(table)
    return windows, problems


def main(argv: Sequence[str] | None = None) -> None:
    _, problems = run(argv)
    for problem in problems:
        print(f"soak FAILED: {problem}", file=sys.stderr)
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
