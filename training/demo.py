"""``ccrl demo`` (``make serve``): build the demo corpus and bundle when missing, then serve them.

On a fresh machine this writes a synthetic corpus (``ccrl synth``), trains the whole pipeline on it
(``ccrl train``), writes an example request, and serves the API on the embedded store. Later runs
reuse what is there and start serving at once.
"""

from __future__ import annotations

import json
import os
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
    """A /localize body (base64 uint8 frames, with a video id) for the first test video."""
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


def curl_example(host: str, port: int, request: Path) -> str:
    return (
        f"curl -s -X POST http://{host}:{port}/localize "
        f"-H 'Content-Type: application/json' --data @{request}"
    )


def run_demo(
    data: Path = Path("data/demo"),
    bundle: Path = Path("models/demo"),
    host: str = "127.0.0.1",
    port: int = 8000,
    build_only: bool = False,
) -> None:
    """Build what is missing (with progress bars), then serve ``bundle`` on ``host:port``."""
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
    print(f"[demo] bundle {bundle} is ready; try:\n  {curl_example(host, port, request)}")
    if build_only:
        return
    os.environ.pop("REDIS_URL", None)  # the demo runs on the embedded in-process store
    from service.api.server import run_server

    run_server(bundle=bundle, host=host, port=port, workers=1)
