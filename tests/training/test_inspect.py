"""``ccrl inspect`` and ``training.summary.summarize`` on real files (ours and TensorFlow's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ccrl.cli import app
from service.tfrecord import write_videos
from service.yt8m import AUDIO_DIM, RGB_DIM, Video
from training.summary import format_summary, summarize

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


def _video(
    vid: str, frames: int, labels: list[int], ratings: list[tuple[int, int, float]]
) -> Video:
    rng = np.random.default_rng(len(vid) + frames)
    return Video(
        id=vid,
        rgb=rng.integers(0, 256, (frames, RGB_DIM), dtype=np.uint8),
        audio=rng.integers(0, 256, (frames, AUDIO_DIM), dtype=np.uint8),
        labels=np.array(labels, dtype=np.int64),
        segment_labels=np.array([c for c, _, _ in ratings], dtype=np.int64),
        segment_starts=np.array([s for _, s, _ in ratings], dtype=np.int64),
        segment_scores=np.array([x for _, _, x in ratings], dtype=np.float32),
    )


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    videos = [
        _video("v1", 20, [1, 2], [(1, 0, 1.0), (2, 0, 0.0), (1, 5, 1.0)]),
        # start 20 is past the last whole segment of a 22-frame video: dropped and counted
        _video("v2", 22, [3], [(3, 15, 1.0), (3, 20, 1.0)]),
        _video("v3", 7, [], []),
        _video("v4", 300, [2, 9], [(9, 295, 0.0)]),
    ]
    write_videos(videos, tmp_path / "set", num_shards=3, compress=True)
    return tmp_path / "set"


def test_summarize_counts(corpus: Path) -> None:
    s = summarize([corpus])
    assert s["files"] == 3 and s["videos"] == 4
    assert s["frames"] == 20 + 22 + 7 + 300
    assert (s["frames_min"], s["frames_max"]) == (7, 300)
    assert s["frames_mean"] == pytest.approx(349 / 4)
    assert s["segments"] == 4 + 4 + 1 + 60
    assert s["video_labels"] == 5 and s["labelled_videos"] == 3
    assert s["rated_segments"] == 5  # (v1,0,1) (v1,0,2) (v1,5,1) (v2,15,3) (v4,295,9)
    assert s["positive_segments"] == 3 and s["negative_segments"] == 2
    assert s["distinct_rated_segments"] == 4  # v1:0, v1:5, v2:15, v4:295
    assert s["rated_videos"] == 3
    assert s["classes"] == 4  # {1, 2, 3, 9}
    assert s["video_classes"] == 4 and s["segment_classes"] == 4
    assert s["skipped_ratings"] == s["skipped_past_end"] == 1 and s["skipped_unaligned"] == 0
    assert s["bytes"] == sum(p.stat().st_size for p in corpus.iterdir())


def _expected_from_tf_fixtures() -> dict[str, Any]:
    spec = json.loads((DATA / "tf_fixtures.json").read_text())
    vids = [v for f in spec["files"].values() for v in f["videos"]]
    scores = [x for v in vids for x in v["segment_scores"]]
    classes = {c for v in vids for c in v["labels"]} | {
        c for v in vids for c in v["segment_labels"]
    }
    return {
        "files": len(spec["files"]),
        "videos": len(vids),
        "frames": sum(v["frames"] for v in vids),
        "rated_segments": len(scores),
        "positive_segments": sum(1 for x in scores if x == 1.0),
        "rated_videos": sum(1 for v in vids if v["segment_labels"]),
        "classes": len(classes),
        "skipped_ratings": sum(f["skipped_ratings"] for f in spec["files"].values()),
    }


def test_inspect_json_counts_tensorflow_written_files() -> None:
    result = CliRunner().invoke(app, ["inspect", str(DATA), "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)  # exactly one JSON object on stdout
    want = _expected_from_tf_fixtures()
    assert want["skipped_ratings"] > 0  # the fixtures do carry a rating past the last segment
    for key, value in want.items():
        assert got[key] == value, key


def test_inspect_table_and_globs(corpus: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", str(corpus / "*.tfrecord.gz")])
    assert result.exit_code == 0, result.output
    assert "rated (segment, class) pairs" in result.stdout
    line = next(x for x in result.stdout.splitlines() if x.startswith("videos "))
    assert line.split()[-1] == "4"
    assert "positive share" in result.stdout and "60.0%" in result.stdout


def test_inspect_corrupt_file_and_skip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tfrecord"
    two = [_video("x1", 10, [1], []), _video("x2", 10, [2], [])]
    (src,) = write_videos(two, tmp_path / "w", num_shards=1)
    raw = bytearray(src.read_bytes())
    raw[40] ^= 0xFF  # inside the first record's data
    bad.write_bytes(bytes(raw))
    result = CliRunner().invoke(app, ["inspect", str(bad), "--json"])
    assert result.exit_code == 1
    assert "bad.tfrecord: corrupt record at byte offset 0" in result.stderr
    assert "--skip-corrupt" in result.stderr
    result = CliRunner().invoke(app, ["inspect", str(bad), "--json", "--skip-corrupt"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["videos"] == 1 and got["corrupt_records"] == 1


def test_inspect_missing_path(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "missing: no such file or directory" in result.stderr


def test_format_summary_lists_every_key(corpus: Path) -> None:
    s = summarize(corpus)
    text = format_summary(s)
    assert len(text.splitlines()) == len(s) + 1  # one row per key, plus the positive share


@pytest.mark.slow
def test_ccrl_console_script(corpus: Path) -> None:
    exe = Path(sys.executable).with_name("ccrl")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ccrl"]
    proc = subprocess.run(
        [*cmd, "inspect", str(corpus), "--json"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rated_segments"] == 5
