"""A/B measurements behind the serving-speed changes recorded in loadtests/README.md.

    python -m loadtests.ab_serving http  --bundle models/demo [--rounds 2] [--seconds 2.5]
    python -m loadtests.ab_serving micro --bundle models/demo
    python -m loadtests.ab_serving tail  --bundle models/demo [--rounds 2] [--variants ...]

``http``: ``ccrl serve`` under each variant of :data:`VARIANTS` (the tuned defaults, then one
setting reverted at a time, and the settings before the changes), rounds interleaved so that every
variant sees the same machine; prints the median throughput, latency and server CPU per request at
concurrency 1 and 4 (base64 body, 90 frames), and the median p99 / p50 of 4 paced streams at 70% of
the variant's own rate at concurrency 4 (``make bench``'s tail figure). Server CPU per request is
the figure to compare on a machine shared with other work: it moves much less than throughput when
other processes take CPU.

``tail``: what the tail at 70% is made of: the bare scorer's own p99 / p50 in this process, then
for each variant (default: the tuned 2 workers) p99 / p50 of 4 paced streams at 10%, 35% and 70% of
its rate at concurrency 4, with the slowest / fastest p50 of the run's whole seconds.

``micro``: the code-level changes, timed in this process against what they replaced (best of N):
the answer's serialization (``json.dumps`` vs orjson), the JSON-float body (pydantic-core + numpy
vs simdjson), and a full garbage collection of the serving process without and with
``gc.freeze``. Nothing is asserted: it prints what it measures.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from loadtests.hey import LoadResult, PacedLoad, run_hey, run_paced
from loadtests.payloads import encode_json, localize_body, random_videos
from loadtests.serving import serve
from loadtests.timing import best_of
from service.yt8m import Video

# name -> (environment, workers); every variant starts from the service defaults.
VARIANTS: dict[str, tuple[dict[str, str], int]] = {
    "tuned (defaults)": ({}, 1),
    "BLAS 2 threads": ({"CCRL_BLAS_THREADS": "2"}, 1),
    "ORT+XGBoost 2 threads, spinning": (
        {"CCRL_ORT_INTRA_THREADS": "2", "CCRL_XGB_NTHREAD": "2", "CCRL_ORT_SPINNING": "true"},
        1,
    ),
    "thread pool, not on the loop": ({"CCRL_SCORE_ON_LOOP": "false"}, 1),
    "access log on": ({"CCRL_ACCESS_LOG": "true"}, 1),
    "asyncio loop": ({"CCRL_EVENT_LOOP": "asyncio"}, 1),
    "before (2 threads each, pool, log)": (
        {
            "CCRL_BLAS_THREADS": "2",
            "CCRL_ORT_INTRA_THREADS": "2",
            "CCRL_XGB_NTHREAD": "2",
            "CCRL_ORT_SPINNING": "true",
            "CCRL_SCORE_ON_LOOP": "false",
            "CCRL_ACCESS_LOG": "true",
        },
        1,
    ),
    "tuned, 2 workers": ({}, 2),
    "2 workers, no request cap per connection": ({"CCRL_KEEP_ALIVE_REQUESTS": "0"}, 2),
    "2 workers, no connection balance": ({"CCRL_BALANCE_CONNECTIONS": "false"}, 2),
    "3 workers": ({}, 3),
    "4 workers": ({}, 4),
    "2 workers, no balance, no request cap": (
        {"CCRL_BALANCE_CONNECTIONS": "false", "CCRL_KEEP_ALIVE_REQUESTS": "0"},
        2,
    ),
    "2 workers, each a thread pool of 2 scoring slots": (
        {"CCRL_SCORE_ON_LOOP": "false", "CCRL_MAX_CONCURRENT_SCORING": "2"},
        2,
    ),
    "1 worker, thread pool, 2 scoring slots": (
        {"CCRL_SCORE_ON_LOOP": "false", "CCRL_MAX_CONCURRENT_SCORING": "2"},
        1,
    ),
}


def _warm_servers(
    bundle: Path, video: Video, rounds: int, names: Sequence[str]
) -> Iterator[tuple[str, int, str, Path]]:
    """For ``rounds`` rounds, each variant of ``names`` in turn: ``(name, server pid, /localize
    URL, base64 body file of video)`` with its ``ccrl serve`` started and warmed up (stopped when
    the caller asks for the next one)."""
    with tempfile.TemporaryDirectory(prefix="ccrl-ab-") as tmp:
        body = Path(tmp) / "b64.json"
        body.write_bytes(encode_json(localize_body(video, "b64")))
        for _ in range(rounds):
            for name in names:
                env, workers = VARIANTS[name]
                with serve(bundle, env=env, workers=workers) as srv:
                    url = f"{srv.url}/localize"
                    run_hey(url, body, concurrency=2, seconds=1)
                    yield name, srv.pid, url, body


def ab_http(bundle: Path, rounds: int, seconds: float, names: Sequence[str]) -> None:
    video = random_videos(1, min_frames=90, max_frames=90, seed=0)[0]
    runs: dict[tuple[str, int], list[LoadResult]] = {}
    tails: dict[str, list[float]] = {}
    for name, pid, url, body in _warm_servers(bundle, video, rounds, names):
        for c in (1, 4):
            r = run_hey(url, body, concurrency=c, seconds=seconds, server_pid=pid)
            runs.setdefault((name, c), []).append(r)
        paced = run_paced(url, body, rate=0.7 * r.throughput, streams=4, seconds=2 * seconds)
        tails.setdefault(name, []).append(paced.p99_over_p50)
    print(
        f"{'variant':<48} {'c':>2} {'videos/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10}"
        f" {'p99/p50@70%':>11}"
    )
    for (name, c), rs in runs.items():

        def med(f: Any, rs: list[LoadResult] = rs) -> float:
            return statistics.median(f(r) for r in rs)

        each = "/".join(f"{t:.2f}" for t in tails[name])
        tail = f"{statistics.median(tails[name]):11.2f} ({each})" if c == 4 else ""
        print(
            f"{name:<48} {c:>2} {med(lambda r: r.throughput):9.1f} {med(lambda r: r.p50_ms):7.2f} "
            f"{med(lambda r: r.p99_ms):7.2f} {med(lambda r: r.server_cpu_ms):10.3f} {tail}"
        )


TAIL_FRACTIONS = (0.1, 0.35, 0.7)
"""The shares of the saturating rate ``tail`` offers."""


def ab_tail(bundle: Path, rounds: int, seconds: float, names: Sequence[str]) -> None:
    from loadtests.bench_http import Bare, frames_of

    video = random_videos(1, min_frames=90, max_frames=90, seed=0)[0]
    bare = Bare(bundle)
    frames = frames_of(video)
    one = bare.throughput(lambda: bare.call(frames), threads=1, seconds=seconds)
    print(
        f"bare scorer, 1 thread: p50 {one['p50_ms']:.2f} ms, p99 ÷ p50 "
        f"{one['p99_ms'] / one['p50_ms']:.2f}"
    )
    print(
        f"{'variant':<32} {'share':>5} {'rate/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'p99/p50':>7} {'s p50 max/min':>13}"
    )
    for name, _, url, body in _warm_servers(bundle, video, rounds, names):
        top = run_hey(url, body, concurrency=4, seconds=seconds).throughput
        for share in TAIL_FRACTIONS:
            load = PacedLoad(url, [body] * 4, rate=share * top, seconds=2 * seconds)
            with load:
                pass
            r, w = load.result, load.window_p50_ms
            assert r is not None
            spread = f"{max(w) / min(w):13.2f}" if len(w) > 1 else f"{'-':>13}"
            print(
                f"{name:<32} {share:5.2f} {share * top:7.0f} {r.p50_ms:7.2f} "
                f"{r.p99_ms:7.2f} {r.p99_over_p50:7.2f} {spread}"
            )


def ab_micro(bundle: Path) -> None:
    import orjson
    import pydantic_core

    from service.api import routes, schemas
    from service.api.app import build_runtime
    from service.api.bodies import parse_frames_body
    from service.config import Settings
    from service.decode import decode_video
    from service.localize import LocalizeQuery

    rt = build_runtime(Settings(bundle=bundle, redis_url=None))
    video = random_videos(1, min_frames=90, max_frames=90, seed=0)[0]
    b64 = encode_json(localize_body(video, "b64"))
    floats = encode_json(localize_body(video, "json"))
    req = routes._parse(b64, schemas.LocalizeRequest)
    done = rt.localizer.score(LocalizeQuery(req.rgb, req.audio))
    out = schemas.localize_response(done, rt.model_version)
    ms = {
        "json.dumps answer": best_of(200, lambda: json.dumps(out, separators=(",", ":")).encode()),
        "orjson answer": best_of(200, lambda: orjson.dumps(out)),
    }

    def generic() -> None:
        obj = pydantic_core.from_json(floats, allow_inf_nan=True)
        decode_video(obj["rgb"], obj["audio"])

    def fast() -> None:
        r = parse_frames_body(floats, schemas.LocalizeRequest, lambda b: None)  # type: ignore
        decode_video(r.rgb, r.audio)

    ms["JSON floats: pydantic-core + numpy"] = best_of(20, generic)
    ms["JSON floats: simdjson"] = best_of(20, fast)
    ms["base64 body: parse + decode"] = best_of(50, lambda: decode_video(req.rgb, req.audio))
    for name, s in ms.items():
        print(f"{name:<40} {s * 1000:8.3f} ms")
    for frozen in (False, True):
        seconds, objects = full_collection(frozen)
        print(f"full collection, gc.freeze {frozen}: {seconds * 1000:.2f} ms, {objects} objects")


def full_collection(frozen: bool) -> tuple[float, int]:
    """Best-of-5 seconds of a full garbage collection, and the objects it walks, in this process
    (modules, the bundle's Python objects: what a serving process holds) without or with
    ``gc.freeze`` first."""
    gc.collect()
    if frozen:
        gc.freeze()
    try:
        return best_of(5, gc.collect), len(gc.get_objects())
    finally:
        gc.unfreeze()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["http", "tail", "micro"])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.5)
    ap.add_argument("--variants", nargs="*", default=None, choices=list(VARIANTS))
    args = ap.parse_args(argv)
    if args.mode == "http":
        ab_http(args.bundle, args.rounds, args.seconds, args.variants or list(VARIANTS))
    elif args.mode == "tail":
        ab_tail(args.bundle, args.rounds, args.seconds, args.variants or ["tuned, 2 workers"])
    else:
        ab_micro(args.bundle)


if __name__ == "__main__":
    main()
