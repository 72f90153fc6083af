"""Service throughput benchmark: the HTTP service against the bare compute, in one run.

    python -m loadtests.bench_service --bundle models/demo [--requests N] [--concurrency C]

1. bare: the same scorer the service uses (:class:`service.scorer.Scorer`: one ONNX Runtime call,
   the pair features, one XGBoost ``inplace_predict``, the ranking) called in-process in a loop over
   the same videos, from already-dequantized float32 frames;
2. http: ``ccrl serve`` started as a subprocess on a free 127.0.0.1 port (embedded store, one
   worker, the same thread counts), sent N ``POST /localize`` requests from C client threads with
   httpx, once with base64-uint8 bodies and once with JSON-float bodies (bodies encoded up front).

It prints videos/s for each, the service/bare ratio and p50/p95/p99 latency. Every phase is bounded
by ``--requests`` and by ``--max-seconds``, and the server is stopped at the end, whatever happens.
Without ``--bundle`` it trains a tiny bundle once (a synthetic corpus, then
``training.pipeline.run_train``) under ``--workdir`` and reuses it on later runs.

The client shares the machine with the server: on a 2-core box the client threads take CPU from the
service, so the ratio is a lower bound of what a remote client would see.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.payloads import PayloadPool, VideoFrames, random_videos, tfrecord_videos
from loadtests.serving import stop_server
from service.yt8m import dequantize

DEFAULT_WORKDIR = Path("runs/bench_service")


@dataclass
class PhaseResult:
    """What one phase measured. Latencies in milliseconds."""

    mode: str
    requests: int
    errors: int
    seconds: float
    videos_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_body_bytes: float = 0.0
    ratio: float = float("nan")
    first_error: str = ""


def summarize(
    mode: str, latencies_s: Sequence[float], errors: int, seconds: float, **extra: Any
) -> PhaseResult:
    """Throughput (successful videos per wall second) and latency percentiles of one phase."""
    ok = len(latencies_s)
    ms = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    p50, p95, p99 = (float(np.percentile(ms, q)) if ok else float("nan") for q in (50, 95, 99))
    return PhaseResult(
        mode=mode,
        requests=ok + errors,
        errors=errors,
        seconds=seconds,
        videos_per_s=ok / seconds if seconds > 0 else float("nan"),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        **extra,
    )


# ---------------------------------------------------------------------------------------- bundle
def ensure_bundle(bundle: Path | None, workdir: Path, seed: int) -> Path:
    """``bundle`` if given (must exist); else a tiny bundle trained once under ``workdir``."""
    if bundle is not None:
        if not (bundle / "manifest.json").is_file():
            raise SystemExit(f"error: {bundle}: not a model bundle (no manifest.json)")
        return bundle
    out = workdir / "bundle"
    if (out / "manifest.json").is_file():
        print(f"using the tiny bundle {out} built by an earlier run", file=sys.stderr)
        return out
    try:
        from training.pipeline import run_train
        from training.synth import run_synth
    except ImportError as e:
        raise SystemExit(
            f"error: no --bundle given and the training code to build one is missing ({e}); "
            "pass --bundle models/NAME"
        ) from None
    data = workdir / "data"
    print(f"no --bundle: building a tiny one in {out} (corpus in {data})", file=sys.stderr)
    # Tiny and quick: the benchmark measures the serving overhead, not the model's quality.
    run_synth(data, videos=160, classes=20, seed=seed, shards=2, progress=False)
    run_train(
        data,
        out,
        preset="small",
        seed=seed,
        candidate_epochs=2,
        convnet_pretrain_epochs=0,
        progress=False,
    )
    return out


# ---------------------------------------------------------------------------------------- bare
def bench_bare(
    bundle_path: Path,
    videos: Sequence[VideoFrames],
    *,
    requests: int,
    max_seconds: float,
    threads: int,
    max_classes: int,
    max_segments: int,
) -> PhaseResult:
    """The scorer called in a loop in this process, one video after the other."""
    from service.bundle import load_bundle
    from service.scorer import Scorer

    bundle = load_bundle(bundle_path, verify=True, nthread=threads)
    scorer = Scorer(bundle, intra_threads=threads, providers="cpu", xgb_nthread=threads)
    frames = [np.concatenate([dequantize(v.rgb), dequantize(v.audio)], axis=1) for v in videos]
    bank = bundle.bank

    def one(i: int) -> None:
        scorer.localize(
            frames[i % len(frames)], bank, max_classes=max_classes, max_segments=max_segments
        )

    for i in range(min(3, len(frames))):  # warm-up: first-call allocations
        one(i)
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + max_seconds
    for i in range(requests):
        t = time.perf_counter()
        if t > deadline:
            break
        one(i)
        latencies.append(time.perf_counter() - t)
    return summarize("bare (in-process)", latencies, 0, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------- http
def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(
    bundle: Path,
    *,
    threads: int,
    scoring_slots: int,
    redis_url: str | None = None,
    startup_s: float = 90.0,
    extra_env: dict[str, str] | None = None,
    started: list[subprocess.Popen[bytes]] | None = None,
) -> Iterator[str]:
    """``ccrl serve`` on a free 127.0.0.1 port, ready (``/readyz`` 200); stopped on exit.

    The server gets none of this process's ``CCRL_*`` / ``REDIS_URL`` variables, only the thread
    settings, ``redis_url`` and ``extra_env``. Its process is appended to ``started`` if given.
    """
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCRL_") and k != "REDIS_URL"}
    env.update(
        {
            "CCRL_ORT_INTRA_THREADS": str(threads),
            "CCRL_ORT_INTER_THREADS": "1",
            "CCRL_XGB_NTHREAD": str(threads),
            "CCRL_ORT_PROVIDERS": "cpu",
            "CCRL_MAX_CONCURRENT_SCORING": str(scoring_slots),
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra_env or {})
    log = tempfile.NamedTemporaryFile(prefix="ccrl-bench-serve-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "ccrl", "serve", "--bundle", str(bundle)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if started is not None:
        started.append(proc)
    url = f"http://127.0.0.1:{port}"

    def log_tail() -> str:
        log.flush()
        return Path(log.name).read_text(errors="replace")[-3000:]

    try:
        deadline = time.monotonic() + startup_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"ccrl serve exited with {proc.returncode}:\n{log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{url}/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"ccrl serve not ready after {startup_s:.0f} s:\n{log_tail()}"
                    )
                time.sleep(0.2)
        yield url
    finally:
        stop_server(proc)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def bench_http(
    url: str,
    bodies: Sequence[bytes],
    *,
    mode: str,
    requests: int,
    concurrency: int,
    max_seconds: float,
) -> PhaseResult:
    """``requests`` POST /localize from ``concurrency`` threads (bounded by ``max_seconds``)."""
    import httpx

    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    with httpx.Client(base_url=url, timeout=60.0, limits=limits) as client:
        for body in bodies[: min(3, len(bodies))]:  # warm-up: connections, first-call paths
            client.post("/localize", content=body, headers=headers)
        start = time.perf_counter()
        deadline = start + max_seconds

        def worker() -> None:
            while time.perf_counter() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t = time.perf_counter()
                try:
                    body = bodies[i % len(bodies)]
                    resp = client.post("/localize", content=body, headers=headers)
                    ok = resp.status_code == 200
                    why = "" if ok else f"HTTP {resp.status_code}: {resp.text[:200]}"
                except httpx.HTTPError as e:
                    ok, why = False, f"{type(e).__name__}: {e}"
                dt = time.perf_counter() - t
                with lock:
                    if ok:
                        latencies.append(dt)
                    else:
                        errors.append(why)

        pool = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        seconds = time.perf_counter() - start
    return summarize(
        mode,
        latencies,
        len(errors),
        seconds,
        mean_body_bytes=float(np.mean([len(b) for b in bodies])),
        first_error=errors[0] if errors else "",
    )


# ---------------------------------------------------------------------------------------- report
def format_table(results: Sequence[PhaseResult]) -> str:
    head = (
        f"{'mode':<20} {'videos/s':>9} {'ratio':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'requests':>8} {'errors':>6} {'body MB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        body = f"{r.mean_body_bytes / 1e6:8.2f}" if r.mean_body_bytes else f"{'-':>8}"
        lines.append(
            f"{r.mode:<20} {r.videos_per_s:9.1f} {r.ratio:6.2f} {r.p50_ms:8.1f} {r.p95_ms:8.1f} "
            f"{r.p99_ms:8.1f} {r.requests:8d} {r.errors:6d} {body}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.bench_service",
        description="Throughput of the HTTP service vs the bare in-process compute.",
    )
    p.add_argument("--bundle", type=Path, help="Model bundle (default: build a tiny one).")
    p.add_argument("--requests", type=int, default=100, help="Requests per phase.")
    p.add_argument("--concurrency", type=int, default=4, help="Client threads (http phases).")
    p.add_argument("--videos", type=int, default=8, help="Distinct videos cycled through.")
    p.add_argument("--data", nargs="*", type=Path, help="TFRecords to take videos from.")
    p.add_argument("--min-frames", type=int, default=60)
    p.add_argument("--max-frames", type=int, default=300)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime and XGBoost threads.")
    p.add_argument(
        "--scoring-slots",
        type=int,
        default=1,
        help="CCRL_MAX_CONCURRENT_SCORING of the server (1 = one video at a time, like bare).",
    )
    p.add_argument("--max-seconds", type=float, default=60.0, help="Time cap of each phase.")
    p.add_argument("--startup-seconds", type=float, default=90.0, help="Server start-up cap.")
    p.add_argument("--redis-url", help="Serve with this Redis (default: embedded store).")
    p.add_argument("--encodings", nargs="+", default=["b64", "json"], choices=["b64", "json"])
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="Tiny bundle cache.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", type=Path, help="Also write the results as JSON here.")
    args = p.parse_args(argv)
    for name in ("requests", "concurrency", "videos", "threads", "scoring_slots"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_seconds <= 0:
        p.error("--max-seconds must be > 0")
    return args


def run(argv: Sequence[str] | None = None) -> list[PhaseResult]:
    """Run every phase and print the table; returns the results (bare first)."""
    args = parse_args(argv)
    from service.bundle import load_bundle
    from service.config import Settings

    fields = Settings.model_fields
    max_segments = int(fields["max_segments"].default)
    bundle = ensure_bundle(args.bundle, args.workdir, args.seed)
    # the service's candidate classes per video: the settings', else the bundle's own choice
    default = fields["max_classes"].default
    max_classes = int(default or load_bundle(bundle, verify=False).candidate_defaults[0])
    if args.data:
        videos = tfrecord_videos(args.data, limit=args.videos, min_frames=args.min_frames)
    else:
        videos = random_videos(
            args.videos, min_frames=args.min_frames, max_frames=args.max_frames, seed=args.seed
        )
    frames = [v.num_frames for v in videos]
    print(
        f"bundle {bundle} | {len(videos)} videos, {min(frames)}..{max(frames)} frames "
        f"(mean {np.mean(frames):.0f}) | {args.requests} requests per phase | "
        f"concurrency {args.concurrency} | {args.threads} thread(s) | "
        f"max_classes {max_classes}",
        file=sys.stderr,
    )
    results = [
        bench_bare(
            bundle,
            videos,
            requests=args.requests,
            max_seconds=args.max_seconds,
            threads=args.threads,
            max_classes=max_classes,
            max_segments=max_segments,
        )
    ]
    pool = PayloadPool.build(videos, tuple(args.encodings))
    with running_server(
        bundle,
        threads=args.threads,
        scoring_slots=args.scoring_slots,
        redis_url=args.redis_url,
        startup_s=args.startup_seconds,
    ) as url:
        for enc in args.encodings:
            results.append(
                bench_http(
                    url,
                    pool.bodies[enc],
                    mode=f"http {enc}",
                    requests=args.requests,
                    concurrency=args.concurrency,
                    max_seconds=args.max_seconds,
                )
            )
    bare = results[0].videos_per_s
    for r in results:
        r.ratio = r.videos_per_s / bare if bare > 0 else float("nan")
    print(format_table(results))
    for r in results[1:]:
        print(f"service/bare ({r.mode}): {r.ratio:.2f}")
        if r.errors:
            print(f"  {r.errors} error(s), first: {r.first_error}", file=sys.stderr)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    results = run(argv)
    if any(r.errors for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
