"""``ccrl inspect``: what a set of YouTube-8M TFRecord files holds.

Definitions (the counts are over the ratings KEPT by the reader, see ``service/tfrecord.py``):

- ``videos``: records read; ``frames``: their frames summed (after truncation to 300 frames);
  ``segments``: whole 5-frame segments, ``sum(F // 5)``.
- ``video_labels``: video-level labels summed over videos; ``labelled_videos``: videos with any.
- ``rated_segments``: the number of (segment, class) ratings kept, i.e. one per
  (video, start, class) triple in ``segment_labels``; ``positive_segments``: those with score 1.0,
  ``negative_segments``: the others. ``distinct_rated_segments``: distinct (video, start) pairs.
- ``rated_videos``: videos with at least one kept rating.
- ``classes``: distinct class ids seen in video labels OR segment ratings; ``video_classes`` and
  ``segment_classes``: the two sets alone.
- ``skipped_ratings``: ratings dropped on read, ``skipped_unaligned`` (start not a multiple of 5)
  plus ``skipped_past_end`` (the segment does not fit in the video's frames).
- ``truncated_videos``: videos longer than 300 frames (cut to 300).
- ``corrupt_records`` and ``skipped_files``: what ``--skip-corrupt`` skipped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from service.tfrecord import ReadStats, TFRecordError, read_videos

__all__ = ["format_summary", "run_inspect", "summarize"]


def summarize(
    paths: Iterable[str | Path] | str | Path,
    *,
    skip_corrupt: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Stream the files once and return the counts defined in this module's docstring.

    Memory is constant in the number of videos (apart from the sets of class ids and, for
    ``distinct_rated_segments``, one small set per video).

    Raises:
        FileNotFoundError: a path that does not exist (or a glob/folder without records).
        TFRecordError: a corrupt or malformed record, unless ``skip_corrupt``.
    """
    stats = ReadStats()
    videos = frames = segments = video_labels = labelled = 0
    rated = positive = distinct_rated = rated_videos = 0
    fmin: int | None = None
    fmax = 0
    video_classes: set[int] = set()
    segment_classes: set[int] = set()
    for v in read_videos(paths, skip_corrupt=skip_corrupt, progress=progress, stats=stats):
        n = v.num_frames
        videos += 1
        frames += n
        segments += v.num_segments
        fmin = n if fmin is None else min(fmin, n)
        fmax = max(fmax, n)
        video_labels += len(v.labels)
        labelled += bool(len(v.labels))
        video_classes.update(v.labels.tolist())
        r = len(v.segment_labels)
        if r:
            rated += r
            positive += int(np.count_nonzero(v.segment_scores == 1.0))
            distinct_rated += len(np.unique(v.segment_starts))
            rated_videos += 1
            segment_classes.update(v.segment_labels.tolist())
    return {
        "files": stats.files,
        "bytes": stats.bytes,
        "videos": videos,
        "frames": frames,
        "frames_min": fmin if fmin is not None else 0,
        "frames_max": fmax,
        "frames_mean": round(frames / videos, 3) if videos else 0.0,
        "segments": segments,
        "video_labels": video_labels,
        "labelled_videos": labelled,
        "rated_videos": rated_videos,
        "rated_segments": rated,
        "positive_segments": positive,
        "negative_segments": rated - positive,
        "distinct_rated_segments": distinct_rated,
        "classes": len(video_classes | segment_classes),
        "video_classes": len(video_classes),
        "segment_classes": len(segment_classes),
        "skipped_ratings": stats.skipped_ratings,
        "skipped_unaligned": stats.skipped_unaligned,
        "skipped_past_end": stats.skipped_past_end,
        "truncated_videos": stats.truncated_videos,
        "corrupt_records": stats.corrupt_records,
        "skipped_files": stats.skipped_files,
    }


_LABELS = {
    "files": "files",
    "bytes": "bytes on disk",
    "videos": "videos",
    "frames": "frames",
    "frames_min": "frames per video, min",
    "frames_max": "frames per video, max",
    "frames_mean": "frames per video, mean",
    "segments": "whole 5-frame segments",
    "video_labels": "video-level labels",
    "labelled_videos": "videos with labels",
    "rated_videos": "videos with segment ratings",
    "rated_segments": "rated (segment, class) pairs",
    "positive_segments": "  positive (score 1.0)",
    "negative_segments": "  negative",
    "distinct_rated_segments": "distinct rated segments",
    "classes": "classes (labels or ratings)",
    "video_classes": "  in video labels",
    "segment_classes": "  in segment ratings",
    "skipped_ratings": "ratings skipped",
    "skipped_unaligned": "  start not a multiple of 5",
    "skipped_past_end": "  segment past the last frame",
    "truncated_videos": "videos truncated to 300 frames",
    "corrupt_records": "corrupt records skipped",
    "skipped_files": "files cut short (corrupt)",
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_summary(summary: dict[str, Any]) -> str:
    """A two-column text table of :func:`summarize`'s dict (known keys first, in a fixed order)."""
    keys = [k for k in _LABELS if k in summary] + [k for k in summary if k not in _LABELS]
    width = max(len(_LABELS.get(k, k)) for k in keys)
    vwidth = max(len(_fmt(summary[k])) for k in keys)
    lines = [f"{_LABELS.get(k, k):<{width}}  {_fmt(summary[k]):>{vwidth}}" for k in keys]
    rated = summary.get("rated_segments", 0)
    if rated:
        share = 100.0 * summary["positive_segments"] / rated
        lines.append(f"{'positive share':<{width}}  {share:>{vwidth - 1}.1f}%")
    return "\n".join(lines)


def run_inspect(paths: list[Path], *, json_out: bool = False, skip_corrupt: bool = False) -> None:
    """The ``ccrl inspect`` command: print a table, or ONE JSON object with ``--json``.

    Exits with status 1 and a one-line message on stderr for a missing path or a corrupt file.
    """
    try:
        summary = summarize(paths, skip_corrupt=skip_corrupt, progress=sys.stderr.isatty())
    except (FileNotFoundError, TFRecordError) as exc:
        hint = "" if skip_corrupt else " (use --skip-corrupt to skip bad records)"
        extra = hint if isinstance(exc, TFRecordError) else ""
        print(f"error: {exc}{extra}", file=sys.stderr)
        raise SystemExit(1) from exc
    if json_out:
        print(json.dumps(summary, sort_keys=False))
    else:
        print(format_summary(summary))
