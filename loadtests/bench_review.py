"""Evidence and review benchmark: ``python -m loadtests.bench_review --bundle B --data RATED``.

In process (the runtime's parts, no HTTP), on the videos of ``--data``; prints, best of
``--repeat``, milliseconds per video for:

    localize            ``Localizer.score`` as a request without ``explain`` runs it
    localize+explain    the same with ``"explain": true`` (TreeSHAP of the returned rows, the
                        nearest labelled segments), and the ``explain`` stage alone
    index               ``Localizer.index`` with no review store (``review_keep_per_class=0``)
    index+keep          the same with the review store keeping candidates (the default cap)

then, once every video is indexed, for the class with the most kept segments:

    rescore             re-scoring its kept segments after a label write (``Reviewer.rescore``)
    queue               ``GET /classes/{c}/review`` work: each strategy, with evidence

Nothing is asserted; run it alone on the machine for figures that mean something.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from loadtests.timing import best_of
from service.api.app import build_runtime
from service.config import Settings
from service.decode import encode_frames
from service.localize import LocalizeQuery
from service.tfrecord import read_videos


def _queries(videos: list, max_segments: int) -> list[LocalizeQuery]:
    return [
        LocalizeQuery(
            encode_frames(v.rgb),
            encode_frames(v.audio),
            video_id=v.id,
            max_segments=max_segments,
            overwrite=True,  # the benchmark indexes each video several times
        )
        for v in videos
    ]


def _per_video(repeat: int, fn: object, queries: list[LocalizeQuery]) -> float:
    """Best-of ``repeat`` milliseconds per video of ``fn(query)`` over ``queries``."""
    return 1000 * best_of(repeat, lambda: [fn(q) for q in queries], warmup=True) / len(queries)  # type: ignore[operator]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="rated TFRecords")
    ap.add_argument("--videos", type=int, default=50, help="videos to use")
    ap.add_argument("--max-segments", type=int, default=60, help="segments answered per class")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    settings = Settings(bundle=args.bundle, ort_intra_threads=1, xgb_nthread=1, redis_url=None)
    videos = [v for _, v in zip(range(args.videos), read_videos(args.data), strict=False)]
    queries = _queries(videos, args.max_segments)
    rt = build_runtime(settings)
    loc = rt.localizer
    explained = [replace(q, explain=True) for q in queries]
    plain_ms = _per_video(args.repeat, loc.score, queries)
    explain_ms = _per_video(args.repeat, loc.score, explained)
    stage = np.mean([loc.score(q).timings["explain"] for q in explained]) * 1000
    print(f"videos {len(videos)}, max_segments {args.max_segments}")
    print(f"localize          {plain_ms:8.2f} ms/video")
    print(f"localize+explain  {explain_ms:8.2f} ms/video (explain stage {stage:.2f} ms)")

    done = [loc.score(q) for q in queries]
    bare = build_runtime(settings.model_copy(update={"review_keep_per_class": 0}))
    print(f"index             {_per_video(args.repeat, bare.localizer.index, done):8.2f} ms/video")
    print(f"index+keep        {_per_video(args.repeat, loc.index, done):8.2f} ms/video")

    classes = {int(c) for d in done for c in d.localization.class_ids.tolist()}
    c = max(classes, key=lambda k: len(rt.review.kept.items(k)))
    kept = len(rt.review.kept.items(c))
    rescore = 1000 * best_of(args.repeat, lambda: rt.review.rescore(c))
    print(f"rescore           {rescore:8.2f} ms for class {c} ({kept} kept segments)")
    for strategy in ("uncertain", "top_unlabelled"):
        ms = 1000 * best_of(
            args.repeat, lambda s=strategy: rt.review.queue(c, s, 20, with_evidence=True)
        )
        print(f"queue {strategy:<15} {ms:6.2f} ms (20 segments, with evidence)")
    rt.close()
    bare.close()


if __name__ == "__main__":
    main()
