"""Write tiny YouTube-8M TFRecords with TensorFlow itself, for tests that read them without it.

Run with a Python that has TensorFlow (NOT the project's venv, which has none), from the repo root:

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
    /tmp/tfvenv/bin/python scripts/make-tf-fixtures.py [OUT_DIR]   # default tests/data

It writes, with ``tf.io.TFRecordWriter`` and TensorFlow's own ``tf.train.SequenceExample``:

- ``tf_rated.tfrecord``       3 rated videos, plain; one rating starts past the last whole segment
                              and one start is not a multiple of 5 (both must be dropped on read);
- ``tf_rated.tfrecord.gz``    2 rated videos, gzip;
- ``tf_unrated.tfrecord``     2 videos without segment fields (like the real test set), plain;
- ``tf_unrated.tfrecord.gz``  3 videos without segment fields, gzip, one without labels either;
- ``tf_fixtures.json``        what each file holds, and what a reader must return.

Frame values are a function of (seed, frame, dim) so the test can check every byte:
``rgb[f, d] = (seed + 7 f + d) % 256``, ``audio[f, d] = (seed + 3 f + d) % 256``.
This script imports nothing from the project (TensorFlow's protos and ours share type names).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

RGB_DIM, AUDIO_DIM, SEG = 1024, 128, 5

# (id, frames, seed, labels, ratings as (class, start, score) or None for no segment fields)
FILES: dict[
    str, tuple[str, list[tuple[str, int, int, list[int], list[tuple[int, int, float]] | None]]]
] = {
    "tf_rated.tfrecord": (
        "",
        [
            ("Ab01", 12, 11, [5, 9], [(5, 0, 1.0), (9, 5, 0.0)]),
            # 10 frames: start 10 is past the last whole segment, start 3 is not aligned
            ("Cd02", 10, 22, [5], [(5, 5, 1.0), (5, 10, 1.0), (7, 3, 0.0)]),
            ("Ef03", 6, 33, [2], [(2, 0, 1.0)]),
        ],
    ),
    "tf_rated.tfrecord.gz": (
        "GZIP",
        [
            ("Gh04", 11, 44, [1, 2, 3], [(1, 0, 0.0), (2, 5, 1.0), (3, 5, 1.0)]),
            ("Ij05", 8, 55, [4], [(4, 0, 1.0)]),
        ],
    ),
    "tf_unrated.tfrecord": (
        "",
        [
            ("Kl06", 9, 66, [7, 8], None),
            ("Mn07", 7, 77, [0], None),
        ],
    ),
    "tf_unrated.tfrecord.gz": (
        "GZIP",
        [
            ("Op08", 12, 88, [3], None),
            ("Qr09", 6, 99, [], None),
            ("St10", 10, 111, [1, 6], None),
        ],
    ),
}


def frames(seed: int, n: int, dim: int, step: int) -> np.ndarray:
    f = np.arange(n)[:, None]
    return ((seed + step * f + np.arange(dim)) % 256).astype(np.uint8)


def example(
    vid: str, n: int, seed: int, labels: list[int], ratings: list[tuple[int, int, float]] | None
) -> bytes:
    def i64(v: list[int]) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    ctx = {
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[vid.encode()])),
        "labels": i64(labels),
    }
    if ratings is not None:
        ctx["segment_labels"] = i64([c for c, _, _ in ratings])
        ctx["segment_start_times"] = i64([s for _, s, _ in ratings])
        ctx["segment_scores"] = tf.train.Feature(
            float_list=tf.train.FloatList(value=[x for _, _, x in ratings])
        )
    lists = {}
    for name, arr in (
        ("rgb", frames(seed, n, RGB_DIM, 7)),
        ("audio", frames(seed, n, AUDIO_DIM, 3)),
    ):
        lists[name] = tf.train.FeatureList(
            feature=[
                tf.train.Feature(bytes_list=tf.train.BytesList(value=[row.tobytes()]))
                for row in arr
            ]
        )
    seq = tf.train.SequenceExample(
        context=tf.train.Features(feature=ctx),
        feature_lists=tf.train.FeatureLists(feature_list=lists),
    )
    return seq.SerializeToString()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    spec: dict[str, Any] = {"tensorflow": tf.__version__, "files": {}}
    for name, (compression, videos) in FILES.items():
        opts = tf.io.TFRecordOptions(compression_type=compression)
        with tf.io.TFRecordWriter(str(out / name), options=opts) as w:
            for vid, n, seed, labels, ratings in videos:
                w.write(example(vid, n, seed, labels, ratings))
        entries, skipped = [], 0
        for vid, n, seed, labels, ratings in videos:
            kept = [r for r in ratings or [] if r[1] % SEG == 0 and 0 <= r[1] and r[1] + SEG <= n]
            skipped += len(ratings or []) - len(kept)
            entries.append(
                {
                    "id": vid,
                    "frames": n,
                    "seed": seed,
                    "labels": labels,
                    "has_segment_fields": ratings is not None,
                    "segment_labels": [c for c, _, _ in kept],
                    "segment_starts": [s for _, s, _ in kept],
                    "segment_scores": [x for _, _, x in kept],
                }
            )
        spec["files"][name] = {
            "compression": compression,
            "videos": entries,
            "skipped_ratings": skipped,
        }
        # Check that TensorFlow reads back what it wrote.
        count = sum(
            1 for _ in tf.data.TFRecordDataset([str(out / name)], compression_type=compression)
        )
        assert count == len(videos), (name, count)
    (out / "tf_fixtures.json").write_text(json.dumps(spec, indent=1) + "\n")
    print(f"wrote {len(FILES)} files to {out} with tensorflow {tf.__version__}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tests/data"))
