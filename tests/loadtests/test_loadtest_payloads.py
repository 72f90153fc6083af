"""The load-test payloads are what the service accepts, and decode back to the same frames."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from loadtests.payloads import (  # noqa: E402
    ENCODINGS,
    PayloadPool,
    VideoFrames,
    frames_payload,
    labels_body,
    localize_body,
    random_videos,
    tfrecord_videos,
    with_video_id,
)
from service.api.schemas import LabelsRequest, LocalizeRequest  # noqa: E402
from service.decode import decode_video  # noqa: E402
from service.yt8m import AUDIO_DIM, RGB_DIM, dequantize  # noqa: E402

DATA = ROOT / "tests" / "data"


def test_random_videos_are_valid_deterministic_and_distinct() -> None:
    videos = random_videos(5, min_frames=60, max_frames=300, seed=7)
    again = random_videos(5, min_frames=60, max_frames=300, seed=7)
    assert [v.id for v in videos] == [v.id for v in again]
    assert len({v.id for v in videos}) == 5
    for v, w in zip(videos, again, strict=True):
        assert v.rgb.dtype == np.uint8 and v.rgb.shape == (v.num_frames, RGB_DIM)
        assert v.audio.shape == (v.num_frames, AUDIO_DIM)
        assert 60 <= v.num_frames <= 300
        np.testing.assert_array_equal(v.rgb, w.rgb)
    # Not constant: frames differ within a video and videos differ from each other.
    assert videos[0].rgb.std(axis=0).mean() > 5
    assert not np.array_equal(videos[0].rgb[:60], videos[1].rgb[:60])
    with pytest.raises(ValueError, match="min_frames"):
        random_videos(1, min_frames=400)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_decodes_to_the_dequantized_frames(encoding: str) -> None:
    (video,) = random_videos(1, min_frames=60, max_frames=60, seed=1)
    body = json.loads(json.dumps(localize_body(video, encoding)))  # type: ignore[arg-type]
    frames = decode_video(body["rgb"], body["audio"])
    expected = np.concatenate([dequantize(video.rgb), dequantize(video.audio)], axis=1)
    assert frames.shape == (60, RGB_DIM + AUDIO_DIM)
    tolerance = 1e-6 if encoding == "json" else 0.0
    assert float(np.abs(frames - expected).max()) <= tolerance


def test_bodies_validate_against_the_service_schemas() -> None:
    (video,) = random_videos(1, min_frames=60, max_frames=60, seed=2)
    req = LocalizeRequest.model_validate(
        localize_body(video, "b64", video_id="v-1", max_classes=5, max_segments=3, index=False)
    )
    assert (req.video_id, req.max_classes, req.max_segments, req.index) == ("v-1", 5, 3, False)
    labels = LabelsRequest.model_validate(labels_body(video, [(0, 1), (55, 0)]))
    assert [(s.start, s.label) for s in labels.segments] == [(0, 1), (55, 0)]
    with pytest.raises(ValueError, match="no whole segment starts at frame 57"):
        labels_body(video, [(57, 1)])
    with pytest.raises(ValueError, match="unknown encoding"):
        frames_payload(video.rgb, "base85")  # type: ignore[arg-type]


def test_with_video_id_adds_the_field_without_touching_the_rest() -> None:
    (video,) = random_videos(1, min_frames=10, max_frames=10, seed=3)
    pool = PayloadPool.build([video], ("b64",), max_classes=4)
    body = pool.bodies["b64"][0]
    tagged = with_video_id(body, 'odd "id" é')
    assert json.loads(tagged) == {"video_id": 'odd "id" é', **json.loads(body)}
    with pytest.raises(ValueError, match="without a video_id"):
        with_video_id(tagged, "again")


def test_payload_pool_sizes_and_picks() -> None:
    videos = random_videos(3, min_frames=60, max_frames=120, seed=4)
    pool = PayloadPool.build(videos, ("b64", "json"))
    sizes = pool.sizes()
    # uint8 base64 is ~4/3 bytes per value; 6-decimal JSON floats are ~10.
    assert sizes["json"] > 4 * sizes["b64"]
    i, body = pool.pick("json", random.Random(0))
    assert body == pool.bodies["json"][i]
    assert json.loads(body)["rgb"][0][0] == pytest.approx(
        float(dequantize(videos[i].rgb[0, 0])), abs=1e-6
    )
    with pytest.raises(KeyError, match="b64f32"):
        pool.pick("b64f32", random.Random(0))


def test_tfrecord_videos_reads_real_records_and_filters_short_ones() -> None:
    videos = tfrecord_videos([DATA / "tf_rated.tfrecord"], limit=5, min_frames=10)
    assert [(v.id, v.num_frames) for v in videos] == [("Ab01", 12), ("Cd02", 10)]
    assert isinstance(videos[0], VideoFrames) and videos[0].num_segments == 2
    assert len(tfrecord_videos([DATA], limit=2, min_frames=5)) == 2
    with pytest.raises(ValueError, match="no video with at least 60 frames"):
        tfrecord_videos([DATA / "tf_rated.tfrecord"], limit=5, min_frames=60)


def run_locust(*args: str) -> tuple[int, str]:
    """Run the locustfile headless in a subprocess: (exit code, combined output)."""
    locust = Path(sys.executable).parent / "locust"
    if not locust.exists():
        pytest.skip("locust is not installed (the `load` extra)")
    proc = subprocess.run(
        [str(locust), "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": str(Path(sys.executable).parent), "LOADTEST_VIDEOS": "1"},
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_locustfile_refuses_a_non_loopback_host() -> None:
    rc, output = run_locust("-u", "1", "-r", "1", "-t", "3s", "--host", "http://192.0.2.1:8000")
    assert rc == 2
    assert "'http://192.0.2.1:8000' is not a loopback address" in output, output[-2000:]


def test_locustfile_refuses_unbounded_headless_runs() -> None:
    rc, output = run_locust("-u", "1", "-r", "1", "--host", "http://127.0.0.1:9")
    assert rc == 2
    assert "a headless run needs a run time" in output, output[-2000:]
    rc, output = run_locust("-u", "500", "-r", "1", "-t", "3s", "--host", "http://127.0.0.1:9")
    assert rc == 2
    assert "-u 500 is more than LOADTEST_MAX_USERS=64" in output, output[-2000:]
