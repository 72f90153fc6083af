"""TFRecord read benchmark: ``python -m loadtests.bench_read [--videos N] [--repeat R]``.

Writes a synthetic set of random YouTube-8M videos (plain and gzip shards, in a temporary folder),
reads it back and prints, for each stage, seconds (best of ``--repeat``), videos/s and MB/s of frame
payload (F x 1152 bytes per video), and the ratio to the bare compute: ``np.frombuffer`` decoding
of the same frame bytes, already in memory as the records hold them (one bytes object per frame):
``b"".join`` + ``np.frombuffer`` + reshape, per modality. That is the floor for any reader that
returns contiguous arrays; a zero-copy ``np.frombuffer`` view of bytes already joined is printed
too.

Stages:
    frombuffer view     np.frombuffer of each video's already-joined bytes (no copy at all)
    join+frombuffer     the bare decode above (the "x bare" reference)
    framing         iter_records only: file read, (gunzip,) length + CRC32C checks
    read_videos     the whole reader: framing + protobuf parse + frame join + Video
    write_videos    serialize + frame + (gzip) + write

Random bytes do not compress, so gzip here costs CPU without saving disk (real features compress
a little better). Nothing here is asserted: it prints what it measures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from loadtests.timing import best_of
from service.tfrecord import iter_records, read_videos, write_videos
from service.yt8m import AUDIO_DIM, FEATURE_DIM, MAX_FRAMES, RGB_DIM, Video


def make_videos(n: int, seed: int, min_frames: int, max_frames: int) -> list[Video]:
    """``n`` random videos with ``min_frames..max_frames`` frames, labels and a few ratings."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = int(rng.integers(min_frames, max_frames + 1))
        r = int(rng.integers(0, 6)) if f >= 5 else 0
        out.append(
            Video(
                id=f"b{i:06d}",
                rgb=rng.integers(0, 256, (f, RGB_DIM), dtype=np.uint8),
                audio=rng.integers(0, 256, (f, AUDIO_DIM), dtype=np.uint8),
                labels=rng.integers(0, 1000, int(rng.integers(1, 5))).astype(np.int64),
                segment_labels=rng.integers(0, 1000, r).astype(np.int64),
                segment_starts=(rng.integers(0, f // 5, r) * 5).astype(np.int64)
                if r
                else np.zeros(0, np.int64),
                segment_scores=rng.integers(0, 2, r).astype(np.float32),
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--videos", type=int, default=300, help="number of synthetic videos")
    ap.add_argument("--min-frames", type=int, default=120)
    ap.add_argument("--max-frames", type=int, default=MAX_FRAMES)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per stage (best is kept)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.videos < 1 or not 1 <= args.min_frames <= args.max_frames:
        ap.error("need --videos >= 1 and 1 <= --min-frames <= --max-frames")

    videos = make_videos(args.videos, args.seed, args.min_frames, args.max_frames)
    frames = sum(v.num_frames for v in videos)
    payload_mb = frames * FEATURE_DIM / 1e6
    blobs = [(v.rgb.tobytes(), v.audio.tobytes()) for v in videos]
    per_frame = [
        ([bytes(r) for r in v.rgb], [bytes(a) for a in v.audio], v.num_frames) for v in videos
    ]
    print(
        f"{args.videos} videos, {frames} frames ({frames / args.videos:.0f} per video), "
        f"{payload_mb:.1f} MB of frame payload, {args.shards} shards, best of {args.repeat}"
    )

    def view() -> None:
        for (rgb, audio), v in zip(blobs, videos, strict=True):
            np.frombuffer(rgb, dtype=np.uint8).reshape(v.num_frames, RGB_DIM)
            np.frombuffer(audio, dtype=np.uint8).reshape(v.num_frames, AUDIO_DIM)

    def bare() -> None:
        for rgb, audio, f in per_frame:
            np.frombuffer(b"".join(rgb), dtype=np.uint8).reshape(f, RGB_DIM)
            np.frombuffer(b"".join(audio), dtype=np.uint8).reshape(f, AUDIO_DIM)

    t_bare = best_of(max(args.repeat, 5), bare)
    rows: list[tuple[str, float, float | None]] = [
        ("frombuffer view", best_of(max(args.repeat, 5), view), None),
        ("join+frombuffer", t_bare, None),
    ]

    with tempfile.TemporaryDirectory(prefix="ccrl-bench-read-") as tmp:
        for label, compress in (("plain", False), ("gzip", True)):
            out = Path(tmp) / label
            paths: list[Path] = []

            def write(
                out: Path = out, compress: bool = compress, paths: list[Path] = paths
            ) -> None:
                paths[:] = write_videos(videos, out, num_shards=args.shards, compress=compress)

            t_write = best_of(args.repeat, write)
            disk_mb = sum(p.stat().st_size for p in paths) / 1e6

            def framing(paths: list[Path] = paths) -> None:
                for p in paths:
                    for _ in iter_records(p):
                        pass

            def read(paths: list[Path] = paths) -> None:
                n = sum(1 for _ in read_videos(paths))
                assert n == len(videos)

            t_framing = best_of(args.repeat, framing)
            t_read = best_of(args.repeat, read)
            rows.append((f"framing {label}", t_framing, disk_mb))
            rows.append((f"read_videos {label}", t_read, disk_mb))
            rows.append((f"write_videos {label}", t_write, disk_mb))

    print(
        f"{'stage':<22}{'seconds':>9}{'videos/s':>11}{'MB/s':>9}{'disk MB':>9}"
        f"{'x bare':>9}  (MB/s of frame payload; x bare = time / join+frombuffer time)"
    )
    for name, secs, disk in rows:
        print(
            f"{name:<22}{secs:>9.4f}{args.videos / secs:>11.0f}{payload_mb / secs:>9.0f}"
            f"{(f'{disk:.1f}' if disk is not None else '-'):>9}{secs / t_bare:>9.1f}"
        )
    by = {name: secs for name, secs, _ in rows}
    for label in ("plain", "gzip"):
        total, framed = by[f"read_videos {label}"], by[f"framing {label}"]
        rest = max(total - framed, 0.0)
        print(
            f"read_videos {label}: {total / t_bare:.1f}x the bare join+frombuffer cost; "
            f"framing+CRC {framed / total:.0%} of it, parse+decode {rest / total:.0%}"
        )


if __name__ == "__main__":
    main()
