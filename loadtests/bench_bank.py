"""Label-bank benchmark at YouTube-8M shape: ``python -m loadtests.bench_bank [--bundle DIR]``.

For each bank size (``--entries``, default 237,000 labelled segments, the challenge's rated pairs;
then ``--small``, default 1,000) over C classes (``--classes``, default 3,862; the bundle's when
one is given) and D dims (the bundle's embedding dim; 1,152 for the shape bundle built here), it:

1. writes ``entries.npz`` and runs ``ccrl bank import BUNDLE entries.npz --out NEW`` (timed),
   then loads the new bank in process (``ClassBank.load``, timed);
2. times label writes of ``--labels`` segments of one video to a random class: in process
   (``MemoryBankStore.add``) and through Redis with two replicas (``RedisBankStore``: the time of
   ``add`` on one, and until the other's snapshot has it);
3. starts two ``ccrl serve`` replicas on a private ``redis-server`` (the first seeds the bank, the
   second loads it; both timed to ``/readyz`` ready), times ``POST /classes/{c}/labels`` on the
   first and how long until the second's ``/readyz`` shows the new bank version, and
   ``/localize`` p99 on the second (hey, concurrency 1), idle and while hey writes labels to the
   first: paced at ``--write-rate`` (default 50 writes/s) and as fast as it answers;
4. reports Redis's memory for the bank (``INFO memory``, per 1,000 entries).

It prints one table per size, then the ratios big / small, and writes everything to
``--json-out`` (default ``loadtests/results/bench_bank.json``). Without ``--bundle`` it builds a
shape bundle (random logistic candidate model, so D = 1,152, and a small XGBoost model on random
pair features: the benchmark measures the bank, not the model). Nothing is asserted. On a shared
2-core machine run it alone; ``--entries 2000 --small 200 --classes 40 --writes 20`` is a quick
check that it works.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtests" / "results" / "bench_bank.json"
TOKEN = "bench-bank-token"


# ------------------------------------------------------------------------------------ helpers
def pct(xs: Sequence[float], q: float) -> float:
    """The q-th percentile of ``xs`` in milliseconds (NaN when empty)."""
    return float(np.percentile(np.asarray(xs) * 1000, q)) if len(xs) else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def write_entries(path: Path, n: int, num_classes: int, dim: int, seed: int) -> Path:
    """Random labelled entries in the ``ccrl bank import`` format: 5 rated segments a video."""
    rng = np.random.default_rng(seed)
    emb = np.empty((n, dim), np.float32)
    for i in range(0, n, 50_000):  # in blocks: a float64 [N, D] would double the memory
        emb[i : i + 50_000] = rng.standard_normal((min(50_000, n - i), dim), dtype=np.float32)
    np.savez(
        path,
        embeddings=emb,
        classes=rng.integers(0, num_classes, n).astype(np.int64),
        labels=rng.integers(0, 2, n).astype(np.int8),
        videos=np.asarray([f"vid{i // 5:07d}" for i in range(n)]),
        starts=((np.arange(n) % 5) * 5).astype(np.int64),
    )
    return path


def build_shape_bundle(out: Path, num_classes: int, seed: int) -> Path:
    """A bundle of C classes with D = 1,152 (logistic candidates: mean-frame embeddings), random
    weights and a small XGBoost model on random pair features, with an empty bank."""
    import torch
    import xgboost as xgb

    from service.bank import ClassBank
    from service.features import FEATURE_NAMES, FEATURE_TYPES
    from training.bundle_writer import write_bundle
    from training.candidates import LogisticModel, model_config
    from training.export import export_onnx

    torch.manual_seed(seed)
    model = LogisticModel(model_config("logistic", "small", num_classes))
    work = Path(tempfile.mkdtemp(prefix="shape-bundle-"))
    onnx_path = export_onnx(model, work / "candidate.onnx")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4000, len(FEATURE_NAMES))).astype(np.float32)
    x[:, 0] = rng.integers(0, num_classes, len(x))
    dm = xgb.DMatrix(
        x, label=rng.integers(0, 2, len(x)), feature_types=list(FEATURE_TYPES),
        enable_categorical=True,
    )  # fmt: skip
    params = {"objective": "binary:logistic", "max_depth": 4, "nthread": 1, "max_cat_to_onehot": 1}
    booster = xgb.train(params, dm, num_boost_round=30)
    dim = int(model.embedding_dim)
    write_bundle(
        out,
        name=out.name,
        candidate_onnx=onnx_path,
        candidate_meta={
            "input": "frames",
            "num_classes": num_classes,
            "embedding_dim": dim,
            "model": "logistic",
            "preset": "small",
        },
        booster=booster,
        ccrl_params={"max_sim": True, "rounds": 30},
        bank=ClassBank.empty(num_classes, dim),
        classes=[{"id": c, "name": f"class {c}", "vertical": ""} for c in range(num_classes)],
        rated_classes=list(range(num_classes)),
    )
    shutil.rmtree(work, ignore_errors=True)
    return out


def bundle_shape(bundle: Path) -> tuple[int, int]:
    """(C, D) of a bundle, from its manifest."""
    m = json.loads((bundle / "manifest.json").read_text())
    return len(m["classes"]), int(m["candidate"].get("embedding_dim", m["bank"].get("dim", 0)))


# ------------------------------------------------------------------------------- the stores
def label_batch(rng: np.random.Generator, num_classes: int, dim: int, n: int, tag: str) -> Any:
    from service.stores.base import LabelBatch

    return LabelBatch(
        int(rng.integers(0, num_classes)),
        f"{tag}-{rng.integers(1 << 40)}",
        np.arange(n, dtype=np.int64) * 5,
        rng.integers(0, 2, n).astype(np.int8),
        rng.standard_normal((n, dim), dtype=np.float32),
    )


def bench_memory(bank: Any, writes: int, labels: int, seed: int) -> list[float]:
    """Seconds of each in-process ``MemoryBankStore.add`` of ``labels`` segments."""
    from service.stores.memory import MemoryBankStore

    store = MemoryBankStore(bank)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(writes):
        b = label_batch(rng, bank.num_classes, bank.dim, labels, f"mem{i}")
        dt, _ = timed(lambda b=b: store.add(b))
        out.append(dt)
    return out


def bench_redis_store(url: str, bank: Any, writes: int, labels: int, seed: int) -> dict[str, Any]:
    """Two ``RedisBankStore`` replicas: seed and load times, write latency on one, visibility on
    the other (seconds)."""
    from service.stores.redis import RedisBackend
    from service.stores.redis_bank import RedisBankStore

    def replica(ns: str) -> Any:
        return RedisBankStore(
            RedisBackend(url, namespace=ns, timeout=30.0), bank, poll_interval=1.0
        )

    t_seed, a = timed(lambda: replica("bench"))
    t_load, b = timed(lambda: replica("bench"))
    rng = np.random.default_rng(seed)
    lat, vis = [], []
    try:
        for i in range(writes):
            batch = label_batch(rng, bank.num_classes, bank.dim, labels, f"redis{i}")
            dt, res = timed(lambda batch=batch: a.add(batch))
            t0 = time.perf_counter()
            while b.version() < res.version and time.perf_counter() - t0 < 10:
                time.sleep(0.0002)
            vis.append(time.perf_counter() - t0 + dt)
            lat.append(dt)
    finally:
        a.close()
        b.close()
    return {"seed_s": t_seed, "load_s": t_load, "write": lat, "visible": vis}


# ------------------------------------------------------------------------------ the service
@dataclass(frozen=True)
class LocalizeOpts:
    """The ``/localize``-during-writes phase: seconds per run, and the paced write rate."""

    seconds: float
    write_rate: float


def bench_service(
    bundle: Path, url: str, writes: int, labels: int, opts: LocalizeOpts, seed: int
) -> dict[str, Any]:
    """Two ``ccrl serve`` replicas on Redis: start-up, HTTP label writes, visibility, /localize."""
    import httpx

    from loadtests.bench_service import running_server
    from loadtests.payloads import encode_json, labels_body, random_videos

    num_classes, _ = bundle_shape(bundle)
    videos = random_videos(8, min_frames=150, max_frames=300, seed=seed, prefix="bank")
    rng = np.random.default_rng(seed)
    env = {"CCRL_API_TOKEN": TOKEN, "CCRL_BANK_POLL_INTERVAL_S": "1.0"}
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    with running_server(bundle, threads=1, scoring_slots=2, redis_url=url, extra_env=env) as ua:
        out["startup_seed_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        with running_server(bundle, threads=1, scoring_slots=2, redis_url=url, extra_env=env) as ub:
            out["startup_load_s"] = time.perf_counter() - t1
            with httpx.Client(timeout=60) as ha, httpx.Client(timeout=60) as hb:

                def write(i: int) -> tuple[float, int]:
                    v = videos[i % len(videos)]
                    segs = [(5 * j, int(rng.integers(0, 2))) for j in range(labels)]
                    body = labels_body(v, segs)
                    body["video_id"] = f"http{i}-{v.id}"
                    c = int(rng.integers(0, num_classes))
                    dt, r = timed(
                        lambda: ha.post(
                            f"{ua}/classes/{c}/labels", content=encode_json(body), headers=auth
                        )
                    )
                    r.raise_for_status()
                    return dt, int(r.json()["bank_version"])

                lat, vis = [], []
                for i in range(writes):
                    dt, version = write(i)
                    t = time.perf_counter()
                    while hb.get(f"{ub}/readyz").json()["bank_version"] < version:
                        if time.perf_counter() - t > 10:
                            break
                    vis.append(time.perf_counter() - t + dt)
                    lat.append(dt)
                out["write"], out["visible"] = lat, vis
            out.update(localize_under_writes(ua, ub, videos[0], num_classes, labels, opts))
    return out


def _write_bodies(folder: Path, video: Any, labels: int) -> list[Path]:
    """Two label bodies for the same segments of ``video`` and class: all positive, all negative
    (posted in turn, every write relabels them: a real change of the bank each time)."""
    from loadtests.payloads import encode_json, labels_body

    paths = []
    for mark in (1, 0):
        body = labels_body(video, [(5 * j, mark) for j in range(labels)])
        body["video_id"] = f"burst-{video.id}"
        path = folder / f"labels-{mark}.json"
        path.write_bytes(encode_json(body))
        paths.append(path)
    return paths


def localize_under_writes(
    ua: str, ub: str, video: Any, num_classes: int, labels: int, opts: LocalizeOpts
) -> dict[str, Any]:
    """``/localize`` on replica B at concurrency 1 (hey), idle, then while hey writes labels to
    replica A: paced at ``opts.write_rate`` writes/s, and as fast as A answers (for the record).
    Every client is a compiled process of its own, so no client shares a GIL with another."""
    from loadtests.hey import PacedLoad, run_hey
    from loadtests.payloads import encode_json, localize_body

    out: dict[str, Any] = {}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory(prefix="bench-bank-hey-") as tmp:
        folder = Path(tmp)
        body = folder / "localize.json"
        body.write_bytes(encode_json(localize_body(video, "b64")))
        writes = _write_bodies(folder, video, labels)
        target = f"{ub}/localize"
        run_hey(target, body, concurrency=1, seconds=1.0)  # warm up
        out["localize_idle"] = asdict(run_hey(target, body, concurrency=1, seconds=opts.seconds))
        for name, rate in (("localize_writes", opts.write_rate), ("localize_flat_out", None)):
            load = PacedLoad(
                f"{ua}/classes/{num_classes // 2}/labels",
                writes,
                rate=rate,
                seconds=opts.seconds + 1.0,
                headers=auth,
            )
            with load:
                time.sleep(0.5)
                r = run_hey(target, body, concurrency=1, seconds=opts.seconds)
            out[name] = asdict(r)
            out[f"{name}_writer"] = asdict(load.result) if load.result else None
    return out


# ---------------------------------------------------------------------------------- redis
class PrivateRedis:
    """A ``redis-server`` on a free port in a temporary folder (no persistence), stopped by PID."""

    def __init__(self) -> None:
        from loadtests.bench_service import free_port

        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("error: redis-server is not installed (make redis installs it)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-bank-redis-"))
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        self.client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        for _ in range(200):
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def flush(self) -> None:
        self.client.flushall()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------------- a size
def bench_size(
    args: argparse.Namespace, base: Path, n: int, work: Path, srv: PrivateRedis
) -> dict[str, Any]:
    """Every measurement at one bank size."""
    from service.bank import ClassBank

    num_classes, dim = bundle_shape(base)
    entries = write_entries(work / f"entries-{n}.npz", n, num_classes, dim, args.seed)
    new = work / f"bundle-{n}"
    cmd = [
        sys.executable,
        "-m",
        "ccrl",
        "bank",
        "import",
        str(base),
        str(entries),
        "--out",
        str(new),
    ]
    t_import, proc = timed(lambda: subprocess.run(cmd, capture_output=True, text=True))
    if proc.returncode != 0:
        raise SystemExit(f"error: ccrl bank import failed:\n{proc.stderr[-3000:]}")
    entries.unlink()
    t_load, bank = timed(lambda: ClassBank.load(new / "bank.npz"))
    r: dict[str, Any] = {"entries": n, "classes": num_classes, "dim": dim}
    r["import_s"], r["load_s"] = t_import, t_load
    mem = bench_memory(bank, args.writes, args.labels, args.seed)
    r["mem_write_p50_ms"], r["mem_write_p99_ms"] = pct(mem, 50), pct(mem, 99)
    srv.flush()
    before = srv.used_memory()
    st = bench_redis_store(srv.url, bank, args.writes, args.labels, args.seed)
    r["redis_bytes"] = srv.used_memory() - before
    r["redis_mb_per_1k"] = r["redis_bytes"] / max(n, 1) * 1000 / 1e6
    r["store_seed_s"], r["store_load_s"] = st["seed_s"], st["load_s"]
    r["store_write_p50_ms"], r["store_write_p99_ms"] = pct(st["write"], 50), pct(st["write"], 99)
    r["store_visible_p50_ms"], r["store_visible_p99_ms"] = (
        pct(st["visible"], 50),
        pct(st["visible"], 99),
    )
    del bank
    if not args.no_service:
        srv.flush()
        opts = LocalizeOpts(args.localize_s, args.write_rate)
        sv = bench_service(new, srv.url, args.writes, args.labels, opts, args.seed)
        r["startup_seed_s"], r["startup_load_s"] = sv["startup_seed_s"], sv["startup_load_s"]
        r["http_write_p50_ms"], r["http_write_p99_ms"] = pct(sv["write"], 50), pct(sv["write"], 99)
        r["http_visible_p50_ms"] = pct(sv["visible"], 50)
        r["http_visible_p99_ms"] = pct(sv["visible"], 99)
        idle, busy, flat = sv["localize_idle"], sv["localize_writes"], sv["localize_flat_out"]
        r["localize_p50_idle_ms"], r["localize_p99_idle_ms"] = idle["p50_ms"], idle["p99_ms"]
        r["localize_p50_writes_ms"], r["localize_p99_writes_ms"] = busy["p50_ms"], busy["p99_ms"]
        r["localize_p99_flat_out_ms"] = flat["p99_ms"]
        r["localize_writes_over_idle"] = busy["p99_ms"] / idle["p99_ms"]
        r["localize_flat_out_over_idle"] = flat["p99_ms"] / idle["p99_ms"]
        paced, unpaced = sv["localize_writes_writer"], sv["localize_flat_out_writer"]
        r["burst_write_rate"] = args.write_rate
        r["burst_writes"] = paced["ok"] if paced else 0
        r["burst_writes_per_s"] = paced["throughput"] if paced else 0.0
        r["flat_out_writes_per_s"] = unpaced["throughput"] if unpaced else 0.0
        r["burst_write_errors"] = (paced or {}).get("errors", 0) + (unpaced or {}).get("errors", 0)
    shutil.rmtree(new, ignore_errors=True)
    return r


ROWS = (
    ("import_s", "ccrl bank import (s)"),
    ("load_s", "bank load in process (s)"),
    ("startup_seed_s", "serve start-up to ready, seeding replica (s)"),
    ("startup_load_s", "serve start-up to ready, second replica (s)"),
    ("mem_write_p50_ms", "write p50 in process (ms)"),
    ("mem_write_p99_ms", "write p99 in process (ms)"),
    ("store_write_p50_ms", "write p50 through Redis, store (ms)"),
    ("store_write_p99_ms", "write p99 through Redis, store (ms)"),
    ("store_visible_p99_ms", "other replica sees it, p99, store (ms)"),
    ("http_write_p50_ms", "POST labels p50, HTTP (ms)"),
    ("http_write_p99_ms", "POST labels p99, HTTP (ms)"),
    ("http_visible_p99_ms", "other replica sees it, p99, HTTP (ms)"),
    ("localize_p50_idle_ms", "/localize p50, no writes (ms)"),
    ("localize_p99_idle_ms", "/localize p99, no writes (ms)"),
    ("localize_p99_writes_ms", "/localize p99, during paced writes (ms)"),
    ("localize_p99_flat_out_ms", "/localize p99, during flat-out writes (ms)"),
    ("burst_writes_per_s", "paced writes answered per s"),
    ("flat_out_writes_per_s", "flat-out writes answered per s"),
    ("redis_mb_per_1k", "Redis memory per 1,000 entries (MB)"),
)


def format_table(big: dict[str, Any], small: dict[str, Any]) -> str:
    """A markdown table: each figure at both sizes and their ratio."""
    lines = [
        f"| | N = {big['entries']:,} | N = {small['entries']:,} | ratio |",
        "|---|---|---|---|",
    ]
    for key, label in ROWS:
        if key not in big or key not in small:
            continue
        a, b = big[key], small[key]
        ratio = a / b if b else float("nan")
        lines.append(f"| {label} | {a:.3f} | {b:.3f} | {ratio:.2f} |")
    for key, label in (
        ("localize_writes_over_idle", "/localize p99 during paced writes / idle"),
        ("localize_flat_out_over_idle", "/localize p99 during flat-out writes / idle"),
    ):
        if key in big:
            lines.append(f"| {label} | {big[key]:.2f} | {small[key]:.2f} | |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, help="bundle to import into (default: a shape bundle)")
    ap.add_argument("--entries", type=int, default=237_000, help="labelled entries N")
    ap.add_argument("--small", type=int, default=1_000, help="the small bank to compare with")
    ap.add_argument("--classes", type=int, default=3_862, help="C of the shape bundle")
    ap.add_argument("--writes", type=int, default=200, help="label writes timed per phase")
    ap.add_argument("--labels", type=int, default=5, help="segments per label write")
    ap.add_argument(
        "--localize-s", type=float, default=8.0, help="seconds of /localize load per phase"
    )
    ap.add_argument(
        "--write-rate",
        type=float,
        default=50.0,
        help="label writes/s of the paced burst (each of --labels segments)",
    )
    ap.add_argument("--no-service", action="store_true", help="skip the ccrl serve phases")
    ap.add_argument("--json-out", type=Path, default=RESULTS)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-bank-"))
    srv = PrivateRedis()
    try:
        base = args.bundle or build_shape_bundle(work / "shape", args.classes, args.seed)
        sizes = {}
        for n in (args.entries, args.small):
            print(f"bank of {n:,} entries ...", file=sys.stderr, flush=True)
            sizes[n] = bench_size(args, base, n, work, srv)
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    big, small = sizes[args.entries], sizes[args.small]
    table = format_table(big, small)
    print(table)
    result = {"big": big, "small": small, "table": table, "argv": list(argv or sys.argv[1:])}
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    run(argv)


if __name__ == "__main__":
    main()
