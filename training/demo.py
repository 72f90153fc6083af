"""The offline half of ``ccrl demo`` (``make serve``): build the demo corpus and bundle if missing.

On a fresh machine this writes a synthetic corpus (``ccrl synth``), trains the whole pipeline on it
(``ccrl train``) and writes an example request; later runs reuse what is there. Serving it is the
command line's part (:mod:`ccrl.demo`): this package never imports the API.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

DEMO_VIDEOS = 400
DEMO_CLASSES = 40
DEMO_SEED = 0
EXAMPLE = "example-request.json"


def _corpus_ready(data: Path) -> bool:
    return (data / "vocabulary.csv").is_file() and all(
        any((data / split).glob("*.tfrecord*")) for split in ("train", "validate", "test")
    )


def write_example_request(data: Path, out: Path | None = None) -> Path:
    """A /localize body (base64 uint8 frames, with a video id) for the first test video; it says
    ``overwrite``, so that posting it again re-indexes the video instead of a 409."""
    from service.decode import encode_frames
    from service.tfrecord import read_videos

    out = out or data / EXAMPLE
    video = next(iter(read_videos([data / "test"])))
    body = {
        "video_id": video.id,
        "rgb": encode_frames(video.rgb),
        "audio": encode_frames(video.audio),
        "max_classes": 3,
        "max_segments": 3,
        "overwrite": True,
    }
    out.write_text(json.dumps(body) + "\n", encoding="utf-8")
    return out


def _set_aside_if_unusable(bundle: Path) -> None:
    """Move a demo bundle this runtime cannot serve (tampered, or built by an older version with
    other pair features) to ``NAME.unusable-<time>`` so that it is rebuilt."""
    from service.bundle import BundleError, load_bundle

    if not (bundle / "manifest.json").is_file():
        return
    try:
        load_bundle(bundle, verify=True)
    except BundleError as e:
        aside = bundle.with_name(f"{bundle.name}.unusable-{time.strftime('%Y%m%d%H%M%S')}")
        print(f"[demo] {e}\n[demo] moving it to {aside} and rebuilding", file=sys.stderr)
        bundle.rename(aside)


def build_demo(data: Path = Path("data/demo"), bundle: Path = Path("models/demo")) -> Path:
    """Write what is missing of ``data`` (corpus) and ``bundle`` (with progress bars); return the
    example request file (``data/example-request.json``)."""
    data, bundle = Path(data), Path(bundle)
    if not _corpus_ready(data):
        from training.synth import run_synth

        print(f"[demo] writing the demo corpus to {data} ({DEMO_VIDEOS} videos)", file=sys.stderr)
        run_synth(data, videos=DEMO_VIDEOS, classes=DEMO_CLASSES, seed=DEMO_SEED, progress=True)
    _set_aside_if_unusable(bundle)
    if not (bundle / "manifest.json").is_file():
        from training.pipeline import run_train

        print(f"[demo] training the demo bundle {bundle} (a few minutes)", file=sys.stderr)
        run_train(data, bundle, preset="small", seed=DEMO_SEED, progress=True)
    request = data / EXAMPLE
    if not request.is_file():
        write_example_request(data, request)
    return request
