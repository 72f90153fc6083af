"""``ccrl index`` throughput: ``python -m loadtests.bench_index --bundle DIR [--videos 500]``.

Indexes the same corpus with a LocalCluster of 1 worker, then of 2 (``--workers 1,2``), and prints
for each: videos/s over the two scoring phases (CG and rank; the cluster's start-up and the
outputs are left out), the per-task split of a rank task's time (candidate model, pair features,
GBM), the peak memory (max RSS) of each worker process, and the projection to the 6.1M videos of
YouTube-8M: ``measured seconds per video per worker x 6.1M / workers``. ``--data`` indexes given
TFRecords; by default a synthetic corpus of ``--videos`` videos with the bundle's vocabulary is
written to a temporary folder (its ``test/`` split plus ``validate/``, ``train/`` to reach the
count). Run it alone on the machine: other jobs on the same cores make the figures meaningless.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

YT8M_VIDEOS = 6_100_000


def corpus(bundle: Path, videos: int, out: Path) -> list[Path]:
    """A synthetic corpus of about ``videos`` videos for ``bundle``'s vocabulary (all splits)."""
    from service.bundle import read_manifest
    from training.synth import run_synth

    classes = len(read_manifest(bundle).classes) or 20
    run_synth(out, videos=videos, classes=classes, seed=5, shards=4, progress=False)
    return [out / "train", out / "validate", out / "test"]


def measure(bundle: Path, data: list[Path], workers: int, chunk: int, cg: bool) -> dict[str, Any]:
    """One ``run_index`` on a fresh LocalCluster of ``workers``: its timings and worker stats."""
    from batch.index_job import run_index

    with tempfile.TemporaryDirectory() as tmp:
        res = run_index(
            bundle,
            data,
            workers=workers,
            out=Path(tmp) / "sub.csv",
            cg=cg,
            chunk_size=chunk,
            progress=False,
        )
    scoring = res.seconds.get("cg", 0.0) + res.seconds["rank"]
    rss = {}
    for s in res.task_stats:
        rss[s["pid"]] = max(rss.get(s["pid"], 0), s["max_rss_kb"])
    rank = [s for s in res.task_stats if s["phase"] == "rank"]
    split = {k: sum(s.get(k, 0.0) for s in rank) for k in ("t_candidate", "t_features", "t_gbm")}
    return {
        "workers": workers,
        "videos": res.num_videos,
        "seconds": scoring,
        "videos_per_s": res.num_videos / scoring,
        "peak_rss_mb": sorted(round(v / 1024) for v in rss.values()),
        "rank_split": {k: round(v / max(sum(split.values()), 1e-9), 2) for k, v in split.items()},
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--data", type=Path, nargs="*", help="TFRecords (default: a synthetic corpus)")
    ap.add_argument("--videos", type=int, default=500, help="synthetic corpus size")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--chunk", type=int, default=25, help="videos per task")
    ap.add_argument("--no-cg", action="store_true", help="rank every segment (no CG)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or corpus(args.bundle, args.videos, Path(tmp) / "corpus")
        rows = [
            measure(args.bundle, data, int(w), args.chunk, not args.no_cg)
            for w in args.workers.split(",")
        ]
    print(
        "| workers | videos | scoring s | videos/s | speed-up | peak RSS per worker (MB) | "
        "rank task: candidate / features / GBM | 6.1M videos (h) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    base = rows[0]["videos_per_s"]
    for r in rows:
        hours = YT8M_VIDEOS / r["videos_per_s"] / 3600
        sp = r["rank_split"]
        print(
            f"| {r['workers']} | {r['videos']} | {r['seconds']:.1f} | {r['videos_per_s']:.1f} | "
            f"{r['videos_per_s'] / base:.2f}x | {', '.join(map(str, r['peak_rss_mb']))} | "
            f"{sp['t_candidate']:.2f} / {sp['t_features']:.2f} / {sp['t_gbm']:.2f} | {hours:.1f} |"
        )
    per_video = rows[0]["workers"] / rows[0]["videos_per_s"]
    print(
        f"\ncost: {per_video * 1000:.1f} ms per video per worker; 6.1M videos on W workers: "
        f"{YT8M_VIDEOS * per_video / 3600:.1f} h / W"
    )


if __name__ == "__main__":
    main()
