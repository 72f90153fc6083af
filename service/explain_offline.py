"""``ccrl explain BUNDLE --data PATH --video ID --class C``: the evidence of one video's segments
for one class, offline, with the runtime alone (numpy, onnxruntime, xgboost: no torch).

The same scoring and evidence as ``POST /localize`` with ``"explain": true``
(:class:`service.scorer.Scorer`, :func:`service.explain.explain_localization`), against the
bundle's own bank.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.bundle import load_bundle
from service.explain import evidence_json, explain_localization
from service.scorer import Scorer
from service.tfrecord import read_videos
from service.yt8m import Video, segment_end


def find_video(paths: Sequence[Path], video_id: str) -> Video:
    """The video ``video_id`` of the TFRecords ``paths`` (read until found); LookupError if none."""
    for v in read_videos(list(paths)):
        if v.id == video_id:
            return v
    raise LookupError(f"video {video_id!r} is not in {', '.join(str(p) for p in paths)}")


def explain_video(
    bundle: Path, data: Sequence[Path], video_id: str, class_id: int, *, segments: int = 5
) -> dict[str, Any]:
    """The evidence of the best ``segments`` segments of ``video_id`` for ``class_id``, as JSON:
    ``{video_id, class_id, name, video_score, num_segments, segments: [{start, end, score,
    evidence}]}``."""
    b = load_bundle(bundle)
    if not 0 <= class_id < b.num_classes:
        raise ValueError(f"class {class_id} is not in the bundle (ids 0..{b.num_classes - 1})")
    video = find_video(data, video_id)
    scorer = Scorer(b, providers="cpu")
    loc = scorer.localize(
        video.features(), b.bank, video_id=video.id, classes=[class_id], max_segments=segments
    )
    evidence = explain_localization(scorer.booster, b.feature_names, loc, b.bank, video.id)
    c = loc.classes[0]
    return {
        "video_id": video.id,
        "class_id": c.class_id,
        "name": c.name,
        "video_score": c.video_score,
        "num_segments": loc.num_segments,
        "segments": [
            {"start": s, "end": segment_end(s), "score": float(v), "evidence": evidence_json(e)}
            for s, v, e in zip(c.starts.tolist(), c.scores.tolist(), evidence[0], strict=True)
        ],
    }


def format_text(out: dict[str, Any]) -> str:
    """The answer of :func:`explain_video` as a readable report."""
    lines = [
        f"video {out['video_id']}, class {out['class_id']} ({out['name']}): video score "
        f"{out['video_score']:.4f}, {out['num_segments']} segments, the best "
        f"{len(out['segments'])} below",
    ]
    for i, seg in enumerate(out["segments"], 1):
        lines += ["", *_segment_lines(i, seg)]
    return "\n".join(lines)


def _segment_lines(rank: int, seg: dict[str, Any]) -> list[str]:
    e = seg["evidence"]
    lines = [
        f"#{rank} frames {seg['start']}-{seg['end']}: score {seg['score']:.4f}, margin "
        f"{e['margin']:.4f} = bias {e['bias']:.4f} + contributions"
    ]
    for c in e["contributions"]:
        value = "missing" if c["value"] is None else f"{c['value']:.4g}"
        lines.append(f"    {c['contribution']:+.4f}  {c['feature']} = {value}")
    lines.append(f"    {e['rest']:+.4f}  (the other features)")
    for kind in ("positive", "negative"):
        near = ", ".join(
            f"{n['video_id']}:{n['start']} (cos {n['cosine']:.3f})" for n in e["neighbours"][kind]
        )
        lines.append(f"    nearest labelled {kind}s: {near or 'none'}")
    return lines


def run_explain(
    bundle: Path,
    data: Sequence[Path],
    video_id: str,
    class_id: int,
    *,
    segments: int = 5,
    json_out: bool = False,
) -> dict[str, Any]:
    """The ``ccrl explain`` command: prints the report (or its JSON) and returns it."""
    out = explain_video(bundle, data, video_id, class_id, segments=segments)
    print(json.dumps(out, indent=1) if json_out else format_text(out))
    return out
