"""Serving-speed benchmark (``make bench``, ``make bench-quick``): the HTTP service against the bare
scorer, with a compiled load generator.

    python -m loadtests.bench_http --bundle models/demo [--preset full|quick|tiny] [--out DIR]

1. **bare**: the scorer the service builds (:func:`service.api.app.build_runtime`: same bundle,
   same thread settings) called in this process on the same video's float32 frames, in a loop from
   1 thread, then from 2;
2. **http**: ``ccrl serve`` on the serving settings of the deploy files
   (:data:`service.config.DEPLOY_ENV`, their 2 workers; ``--workers``; the embedded store, since
   no request writes), loaded by ``hey`` (:mod:`loadtests.hey`) with ``POST /localize`` of one
   video without ``video_id``: base64-uint8 frames at each concurrency, JSON float frames at the
   best one, then a paced 70% of the best rate for the tail; base64 again with one worker, for the
   HTTP path's cost per core (the service's connections are spread over its workers by the
   per-connection request cap, ``CCRL_KEEP_ALIVE_REQUESTS``: loadtests/README.md);
3. **curves**: latency at concurrency 1 against frames per video and against candidate classes
   (the ``classes`` field; capped at the bundle's vocabulary), with the bare latency of each point;
   and the pair-feature cost against the bank size (``bench_features``' synthetic bank and
   measurement, the default feature set);
4. **profile**: a py-spy flame graph of the server under load (``flame.svg``), when py-spy is there.

It writes ``OUT/latest.json`` (the ratios the issue asks for and every figure behind them), the PNG
curves, and the tables between the ``bench`` markers of ``loadtests/README.md`` and ``README.md``
(see :mod:`loadtests.bench_report`). Nothing is asserted: it reports what it measures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.hey import LoadResult, PacedLoad, hey_path, run_hey
from loadtests.payloads import encode_json, localize_body, random_videos
from loadtests.serving import serve
from service.config import DEPLOY_ENV
from service.yt8m import Video, dequantize

RESULTS = Path(__file__).resolve().parent / "results"
READMES = (
    Path(__file__).resolve().parent / "README.md",
    Path(__file__).resolve().parents[1] / "README.md",
)


@dataclass(frozen=True)
class Preset:
    """How long and how much each part runs (seconds are per hey run or per bare loop)."""

    phase_s: float
    curve_s: float
    bare_s: float
    profile_s: float
    concurrencies: tuple[int, ...] = (1, 2, 4)
    frames: int = 90
    curve_frames: tuple[int, ...] = (60, 120, 180, 240, 300)
    curve_classes: tuple[int, ...] = (1, 5, 10, 20, 50)
    bank_sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    bank_repeat: int = 10
    other_workers: bool = True


PRESETS = {
    "full": Preset(phase_s=8, curve_s=3, bare_s=5, profile_s=6),
    "quick": Preset(phase_s=3, curve_s=1.5, bare_s=2, profile_s=3, bank_repeat=5),
    "tiny": Preset(
        phase_s=0.5,
        curve_s=0.3,
        bare_s=0.3,
        profile_s=0,
        concurrencies=(1, 2),
        frames=30,
        curve_frames=(30, 60),
        curve_classes=(1, 2),
        bank_sizes=(500, 1_000),
        bank_repeat=2,
        other_workers=False,
    ),
}


# ---------------------------------------------------------------------------------------- bodies
def write_body(path: Path, video: Video, encoding: str, **fields: Any) -> Path:
    """One ``/localize`` body (no ``video_id``) as a file for hey."""
    path.write_bytes(encode_json(localize_body(video, encoding, **fields)))  # type: ignore[arg-type]
    return path


def frames_of(video: Video) -> np.ndarray:
    """float32 [F, 1152]: the dequantized frames the service decodes from the body."""
    return np.concatenate([dequantize(video.rgb), dequantize(video.audio)], axis=1)


# ---------------------------------------------------------------------------------------- bare
class Bare:
    """The service's scorer in this process (:func:`build_runtime` on the default settings)."""

    def __init__(self, bundle: Path) -> None:
        from service.api.app import build_runtime
        from service.config import Settings

        self.rt = build_runtime(Settings(bundle=bundle, redis_url=None))
        self.num_classes = self.rt.scorer.num_classes

    def call(self, frames: np.ndarray, classes: Sequence[int] | None = None) -> None:
        loc = self.rt.localizer  # the settings' limits, else the bundle's (as the service)
        self.rt.scorer.localize(
            frames,
            self.rt.bank.snapshot(),
            classes=classes,
            max_classes=loc.max_classes,
            max_segments=self.rt.settings.max_segments,
            min_video_score=loc.min_video_score,
        )

    def throughput(self, fn: Callable[[], None], *, threads: int, seconds: float) -> dict[str, Any]:
        """Calls per second of ``fn`` from ``threads`` threads for ``seconds``, and p50 (ms)."""
        for _ in range(3):
            fn()
        lat: list[list[float]] = [[] for _ in range(threads)]
        stop = time.perf_counter() + seconds

        def loop(mine: list[float]) -> None:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                fn()
                mine.append(time.perf_counter() - t)

        pool = [threading.Thread(target=loop, args=(lat[i],)) for i in range(threads)]
        t0 = time.perf_counter()
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        wall = time.perf_counter() - t0
        every = np.asarray([x for part in lat for x in part]) * 1000.0
        p50, p99 = (float(v) for v in np.percentile(every, [50, 99]))
        return {
            "threads": threads,
            "calls": len(every),
            "throughput": len(every) / wall,
            "p50_ms": p50,
            "p99_ms": p99,
        }


# ---------------------------------------------------------------------------------------- http
def load(r: LoadResult) -> dict[str, Any]:
    """A load result as JSON, with the per-request CPU figures."""
    out = asdict(r)
    out["server_cpu_ms_per_request"] = r.server_cpu_ms
    out["client_cpu_ms_per_request"] = r.client_cpu_s * 1000.0 / r.ok if r.ok else None
    return out


def http_pass(
    url: str, pid: int, bodies: dict[str, Path], p: Preset, *, with_json: bool
) -> dict[str, Any]:
    """b64 at every concurrency; JSON at the best one (when ``with_json``)."""
    target = f"{url}/localize"
    run_hey(target, bodies["b64"], concurrency=max(p.concurrencies), seconds=min(1.0, p.phase_s))
    b64 = {
        c: run_hey(target, bodies["b64"], concurrency=c, seconds=p.phase_s, server_pid=pid)
        for c in p.concurrencies
    }
    best = max(b64, key=lambda c: b64[c].throughput)
    out: dict[str, Any] = {
        "b64": {str(c): load(r) for c, r in b64.items()},
        "best_concurrency": best,
    }
    if with_json:
        js = run_hey(target, bodies["json"], concurrency=best, seconds=p.phase_s, server_pid=pid)
        out["json"] = {str(best): load(js)}
    return out


def tail(url: str, body: Path, saturating: float, p: Preset) -> dict[str, Any]:
    """Latency at a paced 70% of the saturating rate (p99 / p50), with the p50 of each second of
    the run (the same load: how much the machine's own speed moved meanwhile)."""
    rate = 0.7 * saturating
    paced = PacedLoad(
        f"{url}/localize", [body] * max(p.concurrencies), rate=rate, seconds=2 * p.phase_s
    )
    with paced:
        pass
    assert paced.result is not None
    out = load(paced.result)
    out["p99_over_p50"] = paced.result.p99_over_p50
    out["offered_rate"] = rate
    windows = paced.window_p50_ms
    out["window_p50_ms"] = windows
    out["window_p50_max_over_min"] = max(windows) / min(windows) if len(windows) > 1 else None
    return out


def profile(pid: int, url: str, body: Path, seconds: float, out: Path) -> str | None:
    """A py-spy flame graph of the server (and its workers) under load; None without py-spy."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if seconds <= 0 or not Path(spy).exists():
        return None
    cmd = [spy, "record", "--pid", str(pid), "--subprocesses", "--rate", "200"]
    cmd += ["--duration", f"{seconds:g}", "--format", "flamegraph", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_hey(f"{url}/localize", body, concurrency=4, seconds=seconds + 1.5)
    _, err = proc.communicate(timeout=seconds + 60)
    if proc.returncode != 0 or not out.exists():
        print(f"py-spy failed ({proc.returncode}): {err.decode()[-500:]}", file=sys.stderr)
        return None
    return out.name


# ---------------------------------------------------------------------------------------- curves
def latency_curve(
    url: str,
    bare: Bare,
    points: dict[int, tuple[Path, np.ndarray, Sequence[int] | None]],
    p: Preset,
) -> list[dict[str, Any]]:
    """For each point: HTTP p50/p99 at concurrency 1 and the bare p50, in ms."""
    rows = []
    for x, (body, frames, classes) in points.items():
        r = run_hey(f"{url}/localize", body, concurrency=1, seconds=p.curve_s)
        b = bare.throughput(
            lambda f=frames, c=classes: bare.call(f, c), threads=1, seconds=p.curve_s / 2
        )
        rows.append(
            {"x": x, "http_p50_ms": r.p50_ms, "http_p99_ms": r.p99_ms, "bare_p50_ms": b["p50_ms"]}
        )
    return rows


def bank_curve(p: Preset, seed: int, rounds: int = 3) -> list[dict[str, Any]]:
    """The default pair features' cost (ms) against the bank size (bench_features' measurement):
    every bank built first, then ``rounds`` interleaved rounds of best-of-``bank_repeat`` over the
    sizes, the best of them kept, so that a slow spell of the machine does not land on one size."""
    from loadtests.bench_features import feature_cost, synthetic_bank

    banks = {n: synthetic_bank(n, 1000, 256, seed) for n in p.bank_sizes}
    best = {n: float("inf") for n in p.bank_sizes}
    for _ in range(rounds):
        for n, bank in banks.items():
            best[n] = min(best[n], feature_cost(bank, 60, 20, p.bank_repeat, seed) * 1000.0)
    return [{"x": n, "features_ms": best[n]} for n in p.bank_sizes]


# ---------------------------------------------------------------------------------------- run
def _best(http: dict[str, Any]) -> float:
    """The best base64 throughput of one HTTP pass (videos/s)."""
    return max(r["throughput"] for r in http["b64"].values())


def per_core(res: dict[str, Any]) -> dict[str, float | None]:
    """The HTTP path's cost per core: one worker ÷ bare from 1 thread, and the main pass ÷ bare
    from as many threads as it has workers (None where that pass or thread count was not run)."""
    other = res.get("http_other_workers")
    if res["serving"]["workers"] == 1:
        one = res["http"]
    else:
        one = other if other and other.get("workers") == 1 else None
    bare = res["bare"]
    same = bare.get(f"threads_{res['serving']['workers']}")
    return {
        "service_vs_bare_one_worker": _best(one) / bare["threads_1"]["throughput"] if one else None,
        "service_vs_bare_same_cpus": _best(res["http"]) / same["throughput"] if same else None,
    }


def ratios(res: dict[str, Any]) -> dict[str, float | None]:
    """The five figures of the issue, from the measurements, :func:`per_core`'s two, and the bare
    scorer's own p99 / p50 from one thread (no HTTP, no queue: the machine's spread) and how far the
    p50 of one second moved during the paced run."""
    http, one = res["http"], res["bare"]["threads_1"]
    bare = one["throughput"]
    b64 = {int(c): r["throughput"] for c, r in http["b64"].items()}
    best = http["best_concurrency"]
    bank = {row["x"]: row["features_ms"] for row in res["curves"]["bank"]}
    return {
        **per_core(res),
        "service_vs_bare_throughput": max(b64.values()) / bare,
        "concurrency_scaling": b64[max(b64)] / b64[1],
        "json_vs_binary_throughput": http["json"][str(best)]["throughput"] / b64[best],
        "bank_1m_vs_1k_feature_cost": (
            bank[1_000_000] / bank[1_000] if {1_000, 1_000_000} <= bank.keys() else None
        ),
        "bank_largest_vs_smallest_feature_cost": bank[max(bank)] / bank[min(bank)],
        "p99_over_p50_at_70pct": res["tail"]["p99_over_p50"],
        "bare_p99_over_p50": one["p99_ms"] / one["p50_ms"],
        "tail_window_p50_max_over_min": res["tail"]["window_p50_max_over_min"],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every part of the benchmark; returns what ``latest.json`` holds."""
    p = PRESETS[args.preset]
    hey_path()
    load0 = os.getloadavg()
    video = random_videos(1, min_frames=p.frames, max_frames=p.frames, seed=args.seed)[0]
    bare = Bare(args.bundle)
    frames = frames_of(video)
    res: dict[str, Any] = {
        "preset": args.preset,
        "bundle": str(args.bundle),
        "video_frames": p.frames,
    }
    res["bare"] = {
        f"threads_{t}": bare.throughput(lambda: bare.call(frames), threads=t, seconds=p.bare_s)
        for t in (1, 2)
    }
    env = {k: v for k, v in DEPLOY_ENV.items() if k != "CCRL_WORKERS"}
    workers = args.workers
    res["serving"] = {"workers": workers, **env}
    with tempfile.TemporaryDirectory(prefix="ccrl-bench-http-") as tmp:
        t = Path(tmp)
        bodies = {e: write_body(t / f"{e}.json", video, e) for e in ("b64", "json")}
        frame_points = {}
        for f in p.curve_frames:
            v = random_videos(1, min_frames=f, max_frames=f, seed=args.seed + f)[0]
            frame_points[f] = (write_body(t / f"f{f}.json", v, "b64"), frames_of(v), None)
        class_points = {}
        for k in sorted({min(k, bare.num_classes) for k in p.curve_classes}):
            ids = list(range(k))
            class_points[k] = (write_body(t / f"k{k}.json", video, "b64", classes=ids), frames, ids)
        with serve(args.bundle, env=env, workers=workers) as srv:
            res["http"] = http_pass(srv.url, srv.pid, bodies, p, with_json=True)
            best = max(r["throughput"] for r in res["http"]["b64"].values())
            res["tail"] = tail(srv.url, bodies["b64"], best, p)
            res["curves"] = {
                "frames": latency_curve(srv.url, bare, frame_points, p),
                "classes": latency_curve(srv.url, bare, class_points, p),
            }
            res["flame_graph"] = profile(
                srv.pid, srv.url, bodies["b64"], p.profile_s, args.out / "flame.svg"
            )
        other = int(DEPLOY_ENV["CCRL_WORKERS"]) if workers == 1 else 1
        if p.other_workers and other != workers:
            with serve(args.bundle, env=env, workers=other) as srv:
                res["http_other_workers"] = http_pass(srv.url, srv.pid, bodies, p, with_json=False)
                res["http_other_workers"]["workers"] = other
    res["curves"]["bank"] = bank_curve(p, args.seed)
    res.update(ratios(res))
    res["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg_before": load0,
        "loadavg_after": os.getloadavg(),
    }
    res["generated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return res


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m loadtests.bench_http", description=__doc__.splitlines()[0]
    )
    ap.add_argument(
        "--bundle", type=Path, required=True, help="Model bundle (make serve: models/demo)."
    )
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument(
        "--workers",
        type=int,
        default=int(DEPLOY_ENV["CCRL_WORKERS"]),
        help="Server workers of the main pass (default: the deploy files', %(default)s).",
    )
    ap.add_argument("--out", type=Path, default=RESULTS, help="Where latest.json and the plots go.")
    ap.add_argument(
        "--readme",
        type=Path,
        nargs="*",
        default=list(READMES),
        help="Files whose bench tables to rewrite.",
    )
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from loadtests.bench_report import write_report

    args = parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        raise SystemExit(
            f"error: {args.bundle}: not a model bundle (make serve builds models/demo)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args)
    write_report(res, args.out, args.readme)
    return res


if __name__ == "__main__":
    main()
