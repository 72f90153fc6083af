"""TFRecord I/O without TensorFlow: framing, CRCs, gzip, shards, quirks, TF fixtures."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import logging
import os
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.proto import example_pb2
from service.tfrecord import (
    CorruptRecordError,
    ReadStats,
    RecordFormatError,
    TFRecordError,
    example_to_video,
    expand_paths,
    iter_records,
    masked_crc32c,
    read_videos,
    video_to_example,
    write_records,
    write_videos,
)
from service.yt8m import AUDIO_DIM, RGB_DIM, Video

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


def make_video(
    vid: str,
    frames: int,
    seed: int,
    *,
    labels: list[int] | None = None,
    ratings: list[tuple[int, int, float]] | None = None,
) -> Video:
    """A random video; ``ratings`` are (class, start, score) triples."""
    rng = np.random.default_rng(seed)
    r = ratings or []
    return Video(
        id=vid,
        rgb=rng.integers(0, 256, (frames, RGB_DIM), dtype=np.uint8),
        audio=rng.integers(0, 256, (frames, AUDIO_DIM), dtype=np.uint8),
        labels=np.array(labels or [], dtype=np.int64),
        segment_labels=np.array([c for c, _, _ in r], dtype=np.int64),
        segment_starts=np.array([s for _, s, _ in r], dtype=np.int64),
        segment_scores=np.array([x for _, _, x in r], dtype=np.float32),
    )


def assert_same(a: Video, b: Video) -> None:
    assert a.id == b.id
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.segment_labels, b.segment_labels)
    np.testing.assert_array_equal(a.segment_starts, b.segment_starts)
    np.testing.assert_array_equal(a.segment_scores, b.segment_scores)
    assert b.rgb.dtype == np.uint8 and b.audio.dtype == np.uint8
    assert b.labels.dtype == np.int64 and b.segment_starts.dtype == np.int64
    assert b.segment_scores.dtype == np.float32


@pytest.fixture()
def videos() -> list[Video]:
    return [
        make_video("aa01", 12, 0, labels=[3, 7], ratings=[(3, 0, 1.0), (7, 5, 0.0)]),
        make_video("bb02", 300, 1, labels=[1], ratings=[(1, 295, 1.0)]),
        make_video("cc03", 6, 2),  # no labels, no ratings
        make_video("dd04", 0, 3, labels=[2]),  # no frames at all
        make_video("ee05", 23, 4, labels=[0, 1, 2], ratings=[(0, 15, 1.0)]),
    ]


# -- framing ---------------------------------------------------------------------------------------


def test_masked_crc_matches_known_value() -> None:
    # crc32c("123456789") = 0xE3069283 (the RFC 3720 check value); mask it by the formula.
    crc = 0xE3069283
    want = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert masked_crc32c(b"123456789") == want


def test_record_framing_layout(tmp_path: Path) -> None:
    path = tmp_path / "x.tfrecord"
    assert write_records(path, [b"hello", b""]) == 2
    raw = path.read_bytes()
    assert len(raw) == (12 + 5 + 4) + (12 + 0 + 4)
    (length,) = struct.unpack_from("<Q", raw, 0)
    assert length == 5
    assert struct.unpack_from("<I", raw, 8)[0] == masked_crc32c(raw[:8])
    assert raw[12:17] == b"hello"
    assert struct.unpack_from("<I", raw, 17)[0] == masked_crc32c(b"hello")
    assert list(iter_records(path)) == [b"hello", b""]


def test_gzip_detected_by_magic_not_name(tmp_path: Path) -> None:
    path = tmp_path / "plainname.tfrecord"
    write_records(path, [b"abc", b"defg"], compress=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert list(iter_records(path)) == [b"abc", b"defg"]


# -- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_sharded(tmp_path: Path, videos: list[Video], compress: bool) -> None:
    paths = write_videos(videos, tmp_path, prefix="train", num_shards=3, compress=compress)
    ext = ".tfrecord.gz" if compress else ".tfrecord"
    assert [p.name for p in paths] == [f"train-{i:05d}-of-00003{ext}" for i in range(3)]
    assert all(p.is_file() for p in paths)
    # round-robin: shard 0 holds videos 0 and 3
    assert [v.id for v in read_videos([paths[0]])] == ["aa01", "dd04"]
    stats = ReadStats()
    back = list(read_videos(paths, stats=stats))
    assert sorted(v.id for v in back) == sorted(v.id for v in videos)
    by_id = {v.id: v for v in back}
    for v in videos:
        assert_same(v, by_id[v.id])
    assert stats.files == 3 and stats.videos == 5 and stats.records == 5
    assert stats.skipped_ratings == 0 and stats.corrupt_records == 0
    assert stats.bytes == sum(p.stat().st_size for p in paths)


def test_more_shards_than_videos_and_empty_input(tmp_path: Path, videos: list[Video]) -> None:
    paths = write_videos(videos[:2], tmp_path / "a", num_shards=4)
    assert len(paths) == 4 and paths[3].stat().st_size == 0
    assert [v.id for v in read_videos(tmp_path / "a")] == ["aa01", "bb02"]
    empty = write_videos([], tmp_path / "b", num_shards=2, compress=True)
    assert list(read_videos(empty)) == []


def test_unrated_video_has_no_segment_fields(videos: list[Video]) -> None:
    seq = example_pb2.SequenceExample.FromString(video_to_example(videos[2]))
    assert set(seq.context.feature) == {"id", "labels"}
    assert set(seq.feature_lists.feature_list) == {"rgb", "audio"}
    rated = example_pb2.SequenceExample.FromString(video_to_example(videos[0]))
    assert set(rated.context.feature) == {
        "id",
        "labels",
        "segment_labels",
        "segment_start_times",
        "segment_scores",
    }
    rgb = rated.feature_lists.feature_list["rgb"].feature
    assert len(rgb) == 12 and all(len(f.bytes_list.value[0]) == RGB_DIM for f in rgb)


def test_expand_paths(tmp_path: Path, videos: list[Video]) -> None:
    paths = write_videos(videos, tmp_path / "d", num_shards=2)
    (tmp_path / "d" / "notes.txt").write_text("not a record")
    (tmp_path / "d" / ".part-00000-of-00002.tfrecord.tmp-1").write_bytes(b"")
    assert expand_paths([tmp_path / "d"]) == paths
    assert expand_paths([str(tmp_path / "d" / "*-of-*")]) == paths
    assert expand_paths([paths[1], paths[0]]) == [paths[1], paths[0]]
    with pytest.raises(FileNotFoundError, match="nope"):
        expand_paths([tmp_path / "nope.tfrecord"])
    with pytest.raises(FileNotFoundError, match="matches no files"):
        expand_paths([str(tmp_path / "d" / "*.zzz")])
    (tmp_path / "e").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape("no *.tfrecord* files")):
        expand_paths([tmp_path / "e"])


def test_read_is_lazy_over_shards(tmp_path: Path, videos: list[Video]) -> None:
    paths = write_videos(videos, tmp_path, num_shards=5)
    it = read_videos(paths)
    first = next(it)
    assert first.id == "aa01"
    # A later shard broken after the first read must only fail when reached (streaming).
    paths[4].write_bytes(b"\x00" * 5)
    with pytest.raises(CorruptRecordError):
        list(it)


def _open_files_under(folder: Path) -> int:
    fd_dir = Path("/proc/self/fd")
    n = 0
    for fd in fd_dir.iterdir():
        try:
            n += os.readlink(fd).startswith(str(folder))
        except OSError:
            continue
    return n


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("compress", [False, True])
def test_streams_one_shard_at_a_time(tmp_path: Path, compress: bool) -> None:
    many = [make_video(f"s{i:03d}", 5, i) for i in range(40)]
    paths = write_videos(many, tmp_path, num_shards=40, compress=compress)
    assert _open_files_under(tmp_path) == 0  # the writer closed every shard
    seen, most_open = [], 0
    for v in read_videos(paths):
        seen.append(v.id)
        most_open = max(most_open, _open_files_under(tmp_path))
    assert seen == [v.id for v in many]
    assert most_open == 1  # constant resources: only the current shard is open
    assert _open_files_under(tmp_path) == 0


def test_progress_bar_does_not_change_results(
    tmp_path: Path, videos: list[Video], capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_videos(videos, tmp_path, num_shards=2, compress=True, progress=True)
    assert "writing" in capsys.readouterr().err
    assert [v.id for v in read_videos(paths, progress=True)] == [v.id for v in read_videos(paths)]
    assert "reading" in capsys.readouterr().err


# -- corruption ------------------------------------------------------------------------------------


def _three_record_file(tmp_path: Path, videos: list[Video]) -> tuple[Path, list[int]]:
    path = tmp_path / "c.tfrecord"
    records = [video_to_example(v) for v in videos[:3]]
    write_records(path, records)
    offsets = [0]
    for r in records[:-1]:
        offsets.append(offsets[-1] + 12 + len(r) + 4)
    return path, offsets


def _flip(path: Path, pos: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[pos] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_bad_data_crc_names_file_and_offset(tmp_path: Path, videos: list[Video]) -> None:
    path, offsets = _three_record_file(tmp_path, videos)
    _flip(path, offsets[1] + 12 + 100)  # inside record 1's data
    with pytest.raises(CorruptRecordError) as exc:
        list(read_videos(path))
    assert exc.value.offset == offsets[1] and exc.value.path == path
    assert str(path) in str(exc.value) and f"offset {offsets[1]}" in str(exc.value)
    assert "data CRC" in str(exc.value)


def test_bad_data_crc_skipped(
    tmp_path: Path, videos: list[Video], caplog: pytest.LogCaptureFixture
) -> None:
    path, offsets = _three_record_file(tmp_path, videos)
    _flip(path, offsets[1] + 12 + 100)
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="service.tfrecord"):
        ids = [v.id for v in read_videos(path, skip_corrupt=True, stats=stats)]
    assert ids == ["aa01", "cc03"]  # the next record is still found
    assert stats.corrupt_records == 1 and stats.skipped_files == 0
    assert f"offset {offsets[1]}" in caplog.text


def test_bad_length_crc_stops_file(
    tmp_path: Path, videos: list[Video], caplog: pytest.LogCaptureFixture
) -> None:
    path, offsets = _three_record_file(tmp_path, videos)
    _flip(path, offsets[1] + 3)  # inside record 1's length
    with pytest.raises(CorruptRecordError, match=f"offset {offsets[1]}: length CRC"):
        list(read_videos(path))
    other = write_videos(videos[3:], tmp_path / "o", num_shards=1)
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="service.tfrecord"):
        ids = [v.id for v in read_videos([path, *other], skip_corrupt=True, stats=stats)]
    assert ids == ["aa01", "dd04", "ee05"]  # rest of the bad file skipped, next file read
    assert stats.skipped_files == 1
    assert "skipping the rest of this file" in caplog.text


@pytest.mark.parametrize("cut", [5, 12 + 50, -2])
def test_truncated_file(tmp_path: Path, videos: list[Video], cut: int) -> None:
    path, offsets = _three_record_file(tmp_path, videos)
    raw = path.read_bytes()
    end = offsets[2] + cut if cut > 0 else len(raw) + cut
    path.write_bytes(raw[:end])
    with pytest.raises(CorruptRecordError, match="truncated") as exc:
        list(read_videos(path))
    assert exc.value.offset == offsets[2]
    assert [v.id for v in read_videos(path, skip_corrupt=True)] == ["aa01", "bb02"]


def test_truncated_gzip(tmp_path: Path, videos: list[Video]) -> None:
    (path,) = write_videos(videos, tmp_path, num_shards=1, compress=True)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptRecordError, match=str(path.name)):
        list(read_videos(path))
    got = [v.id for v in read_videos(path, skip_corrupt=True)]
    assert got == [v.id for v in videos][: len(got)] and len(got) < len(videos)


def test_corrupt_gzip_stream(tmp_path: Path, videos: list[Video]) -> None:
    (path,) = write_videos(videos, tmp_path, num_shards=1, compress=True)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # random frames do not compress: this lands in bb02's frames
    path.write_bytes(bytes(raw))
    bb02_offset = 12 + len(video_to_example(videos[0])) + 4  # in the uncompressed stream
    with pytest.raises(CorruptRecordError, match="of the uncompressed stream") as exc:
        list(read_videos(path))
    assert exc.value.gzip and exc.value.path == path and exc.value.offset == bb02_offset
    assert "data CRC mismatch" in str(exc.value)
    stats = ReadStats()
    got = [v.id for v in read_videos(path, skip_corrupt=True, stats=stats)]
    assert got == ["aa01", "cc03", "dd04", "ee05"]
    # the record CRC catches it first; gzip's own CRC then fails at the end of the stream
    assert stats.corrupt_records == 2 and stats.skipped_files == 1


def test_garbage_is_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.tfrecord"
    path.write_bytes(b"this is not a tfrecord file at all" * 10)
    with pytest.raises(
        CorruptRecordError, match=re.escape("junk.tfrecord: corrupt record at byte offset 0")
    ):
        list(read_videos(path))
    assert issubclass(CorruptRecordError, TFRecordError)


# -- record format ---------------------------------------------------------------------------------


def _example(frames: list[bytes], audio: list[bytes], **ctx: list[int] | list[float]) -> bytes:
    seq = example_pb2.SequenceExample()
    seq.context.feature["id"].bytes_list.value.append(b"vid1")
    for name, vals in ctx.items():
        if name == "segment_scores":
            seq.context.feature[name].float_list.value.extend(vals)
        else:
            seq.context.feature[name].int64_list.value.extend(vals)  # type: ignore[arg-type]
    for name, blobs in (("rgb", frames), ("audio", audio)):
        fl = seq.feature_lists.feature_list[name]
        for b in blobs:
            fl.feature.add().bytes_list.value.append(b)
    return seq.SerializeToString()


def test_wrong_frame_byte_length(tmp_path: Path) -> None:
    good_rgb, good_audio = [b"\x01" * RGB_DIM] * 5, [b"\x02" * AUDIO_DIM] * 5
    bad_rgb = [*good_rgb[:3], b"\x01" * 1000, good_rgb[4]]
    with pytest.raises(RecordFormatError, match=r"rgb frame 3 must be one 1024-byte string.*1000"):
        example_to_video(_example(bad_rgb, good_audio))
    bad_audio = [*good_audio[:4], b"\x02" * 129]
    with pytest.raises(RecordFormatError, match=r"audio frame 4 .*128-byte.*129"):
        example_to_video(_example(good_rgb, bad_audio))
    # in a file: the message names file and offset, skip mode drops just that record
    path = tmp_path / "f.tfrecord"
    good = _example(good_rgb, good_audio)
    write_records(path, [good, _example(bad_rgb, good_audio), good])
    off = 12 + len(good) + 4
    with pytest.raises(RecordFormatError, match=f"f.tfrecord: record at byte offset {off}"):
        list(read_videos(path))
    stats = ReadStats()
    assert len(list(read_videos(path, skip_corrupt=True, stats=stats))) == 2
    assert stats.corrupt_records == 1


def test_format_errors_are_clear() -> None:
    rgb, audio = [b"\x01" * RGB_DIM] * 5, [b"\x02" * AUDIO_DIM] * 5
    with pytest.raises(RecordFormatError, match="5 rgb frames but 4 audio frames"):
        example_to_video(_example(rgb, audio[:4]))
    with pytest.raises(RecordFormatError, match="differ in length"):
        example_to_video(_example(rgb, audio, segment_labels=[1, 2], segment_start_times=[0]))
    with pytest.raises(RecordFormatError, match="not a SequenceExample"):
        example_to_video(b"\xff\xff\xff")
    with pytest.raises(RecordFormatError, match="missing context feature 'id'"):
        example_to_video(example_pb2.SequenceExample().SerializeToString())
    seq = example_pb2.SequenceExample.FromString(_example(rgb, audio))
    del seq.feature_lists.feature_list["audio"]
    with pytest.raises(RecordFormatError, match="missing feature list 'audio'"):
        example_to_video(seq.SerializeToString())
    seq = example_pb2.SequenceExample.FromString(_example(rgb, audio))
    seq.context.feature["labels"].float_list.value.append(1.0)
    with pytest.raises(RecordFormatError, match="'labels' must be a int64_list, got float_list"):
        example_to_video(seq.SerializeToString())


# -- real-data quirks ------------------------------------------------------------------------------


def test_ratings_past_end_or_unaligned_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    rgb, audio = [b"\x01" * RGB_DIM] * 12, [b"\x02" * AUDIO_DIM] * 12  # 2 whole segments
    data = _example(
        rgb,
        audio,
        labels=[4],
        segment_labels=[4, 4, 4, 4, 4],
        segment_start_times=[0, 5, 10, 7, -5],
        segment_scores=[1.0, 0.0, 1.0, 1.0, 1.0],
    )
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="service.tfrecord"):
        v = example_to_video(data, stats=stats)
    np.testing.assert_array_equal(v.segment_starts, [0, 5])
    np.testing.assert_array_equal(v.segment_scores, [1.0, 0.0])
    assert stats.skipped_ratings == 3
    assert stats.skipped_unaligned == 2 and stats.skipped_past_end == 1  # 7 and -5; 10
    assert "dropped 3 of 5 ratings" in caplog.text and "vid1" in caplog.text


def test_long_video_truncated_to_300(caplog: pytest.LogCaptureFixture) -> None:
    v = make_video("long", 310, 9, ratings=[(1, 295, 1.0), (1, 300, 1.0)])
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="service.tfrecord"):
        got = example_to_video(video_to_example(v), stats=stats)
    assert got.num_frames == 300 and stats.truncated_videos == 1
    np.testing.assert_array_equal(got.rgb, v.rgb[:300])
    np.testing.assert_array_equal(got.segment_starts, [295])
    assert stats.skipped_ratings == stats.skipped_past_end == 1
    assert "truncated" in caplog.text
    kept = example_to_video(video_to_example(v), max_frames=None)
    assert kept.num_frames == 310 and len(kept.segment_starts) == 2


def test_frames_decoded_without_copying_per_value(videos: list[Video]) -> None:
    v = example_to_video(video_to_example(videos[1]))
    # one buffer per modality: the frames are a view, not 300 separate arrays
    assert v.rgb.base is not None and v.rgb.shape == (300, RGB_DIM)
    assert v.rgb.flags.c_contiguous
    assert (
        v.rgb.flags.writeable and v.audio.flags.writeable
    )  # e.g. torch.from_numpy without warnings
    assert not np.shares_memory(v.rgb, v.audio)


# -- TensorFlow-written fixtures (read without TensorFlow) -----------------------------------------


def _fixture_expectations() -> dict[str, object]:
    return json.loads((DATA / "tf_fixtures.json").read_text())


@pytest.mark.skipif(not (DATA / "tf_fixtures.json").exists(), reason="fixtures not generated")
def test_reads_tensorflow_written_fixtures(caplog: pytest.LogCaptureFixture) -> None:
    expect = _fixture_expectations()
    files = expect["files"]
    assert isinstance(files, dict)
    for name, spec in files.items():
        path = DATA / name
        assert path.is_file(), name
        stats = ReadStats()
        with caplog.at_level(logging.WARNING, logger="service.tfrecord"):
            got = list(read_videos(path, stats=stats))
        assert len(got) == len(spec["videos"])
        assert stats.skipped_ratings == spec["skipped_ratings"], name
        for v, want in zip(got, spec["videos"], strict=True):
            assert v.id == want["id"]
            assert v.num_frames == want["frames"]
            np.testing.assert_array_equal(v.labels, want["labels"])
            np.testing.assert_array_equal(v.segment_labels, want["segment_labels"])
            np.testing.assert_array_equal(v.segment_starts, want["segment_starts"])
            np.testing.assert_array_equal(v.segment_scores, want["segment_scores"])
            # frames are a deterministic function of (video index, frame, dim): see the script
            seed = want["seed"]
            f = np.arange(v.num_frames)[:, None]
            np.testing.assert_array_equal(v.rgb, (seed + 7 * f + np.arange(RGB_DIM)) % 256)
            np.testing.assert_array_equal(v.audio, (seed + 3 * f + np.arange(AUDIO_DIM)) % 256)


# -- the real TensorFlow reads what we write (only where tensorflow is installed) ------------------

_TF_READER = r"""
import hashlib, json, sys
import numpy as np
import tensorflow as tf
spec = json.load(open(sys.argv[1]))
ctx = {"id": tf.io.FixedLenFeature([], tf.string),
       "labels": tf.io.VarLenFeature(tf.int64),
       "segment_labels": tf.io.VarLenFeature(tf.int64),
       "segment_start_times": tf.io.VarLenFeature(tf.int64),
       "segment_scores": tf.io.VarLenFeature(tf.float32)}
seqf = {"rgb": tf.io.FixedLenSequenceFeature([], tf.string),
        "audio": tf.io.FixedLenSequenceFeature([], tf.string)}
out = []
for path, comp in spec["files"]:
    for rec in tf.data.TFRecordDataset([path], compression_type=comp):
        c, s = tf.io.parse_single_sequence_example(
            rec, context_features=ctx, sequence_features=seqf)
        rgb = tf.io.decode_raw(s["rgb"], tf.uint8).numpy()
        audio = tf.io.decode_raw(s["audio"], tf.uint8).numpy()
        out.append({"id": c["id"].numpy().decode(),
                    "rgb_sha": hashlib.sha256(rgb.tobytes()).hexdigest(),
                    "rgb_shape": list(rgb.shape),
                    "audio_sha": hashlib.sha256(audio.tobytes()).hexdigest(),
                    "audio_shape": list(audio.shape),
                    "labels": c["labels"].values.numpy().tolist(),
                    "segment_labels": c["segment_labels"].values.numpy().tolist(),
                    "segment_starts": c["segment_start_times"].values.numpy().tolist(),
                    "segment_scores": c["segment_scores"].values.numpy().tolist()})
print(json.dumps(out))
"""


def _tf_python() -> str | None:
    """A Python with tensorflow: this one, or $CCRL_TF_PYTHON (e.g. /tmp/tfvenv/bin/python)."""
    env = os.environ.get("CCRL_TF_PYTHON")
    if env and Path(env).exists():
        return env
    if importlib.util.find_spec("tensorflow") is not None:
        return sys.executable
    return None


@pytest.mark.slow
@pytest.mark.skipif(_tf_python() is None, reason="tensorflow is not installed")
def test_tensorflow_reads_our_files(tmp_path: Path, videos: list[Video]) -> None:
    # TensorFlow runs in a subprocess: its example_pb2 and ours share type names, which protobuf's
    # default descriptor pool refuses to hold twice in one process.
    plain = write_videos(videos, tmp_path / "p", num_shards=2)
    gz = write_videos(videos, tmp_path / "g", num_shards=3, compress=True)
    # shards left empty (more shards than videos) must be valid files for TensorFlow too
    empty = write_videos([], tmp_path / "e", num_shards=1)
    empty += write_videos([], tmp_path / "e", num_shards=1, compress=True)
    files = [[str(p), ""] for p in plain] + [[str(p), "GZIP"] for p in gz]
    spec = {"files": [*files, [str(empty[0]), ""], [str(empty[1]), "GZIP"]]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "reader.py").write_text(_TF_READER)
    python = _tf_python()
    assert python is not None
    proc = subprocess.run(
        [python, str(tmp_path / "reader.py"), str(tmp_path / "spec.json")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    want_order = [videos[i] for i in (0, 2, 4, 1, 3)] + [videos[i] for i in (0, 3, 1, 4, 2)]
    assert [g["id"] for g in got] == [v.id for v in want_order]
    for g, v in zip(got, want_order, strict=True):
        assert g["rgb_shape"][0] == v.num_frames and g["audio_shape"][0] == v.num_frames
        if v.num_frames:
            assert g["rgb_shape"][1] == RGB_DIM and g["audio_shape"][1] == AUDIO_DIM
        assert g["rgb_sha"] == hashlib.sha256(v.rgb.tobytes()).hexdigest()  # every byte
        assert g["audio_sha"] == hashlib.sha256(v.audio.tobytes()).hexdigest()
        assert g["labels"] == v.labels.tolist()
        assert g["segment_labels"] == v.segment_labels.tolist()
        assert g["segment_starts"] == v.segment_starts.tolist()
        assert g["segment_scores"] == v.segment_scores.tolist()


def test_gzip_module_reads_our_gzip(tmp_path: Path, videos: list[Video]) -> None:
    # A gzip file we write is one standard gzip member: the stdlib inflates it to the plain bytes.
    (p,) = write_videos(videos, tmp_path / "p", num_shards=1)
    (g,) = write_videos(videos, tmp_path / "g", num_shards=1, compress=True)
    assert gzip.decompress(g.read_bytes()) == p.read_bytes()


def test_plain_file_starting_like_gzip(tmp_path: Path) -> None:
    # A first record of 0x8b1f bytes makes a plain file start with the gzip magic 1f 8b.
    path = tmp_path / "looks-gzip.tfrecord"
    records = [b"x" * 0x8B1F, b"second"]
    write_records(path, records)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert list(iter_records(path)) == records
    gz = tmp_path / "real.tfrecord.gz"
    write_records(gz, records, compress=True)
    assert list(iter_records(gz)) == records


def test_write_rejects_float_frames() -> None:
    v = make_video("f1", 5, 0)
    v.rgb = v.rgb.astype(np.float32)
    with pytest.raises(ValueError, match="rgb must be uint8"):
        video_to_example(v)


def test_failed_write_leaves_no_files(tmp_path: Path, videos: list[Video]) -> None:
    def broken() -> Iterator[Video]:
        yield videos[0]
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_videos(broken(), tmp_path / "w", num_shards=2)
    assert list((tmp_path / "w").iterdir()) == []


def test_read_benchmark_runs() -> None:
    # `make bench` entry point: a tiny run keeps it from rotting (numbers are printed, not asserted)
    args = ["--videos", "4", "--repeat", "1", "--min-frames", "5", "--max-frames", "12"]
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.bench_read", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stage in ("join+frombuffer", "framing plain", "read_videos plain", "read_videos gzip"):
        assert stage in proc.stdout
    assert "x the bare join+frombuffer cost" in proc.stdout
