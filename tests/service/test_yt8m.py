"""The YouTube-8M frame conventions of ``service/yt8m.py``: quantization, segments, ``Video``."""

from __future__ import annotations

import numpy as np
import pytest

from service.yt8m import (
    AUDIO_DIM,
    FEATURE_DIM,
    MAX_FRAMES,
    RGB_DIM,
    SEGMENT_FRAMES,
    Video,
    dequantize,
    num_segments,
    parse_segment_id,
    quantize,
    segment_id,
    segment_starts,
)

ALL_LEVELS = np.arange(256, dtype=np.uint8)


def test_constants() -> None:
    assert (RGB_DIM, AUDIO_DIM, FEATURE_DIM) == (1024, 128, 1152)
    assert (SEGMENT_FRAMES, MAX_FRAMES) == (5, 300)


def test_dequantize_is_the_starter_code_formula() -> None:
    # The starter code (utils.Dequantize) computes in float32: feat * (4 / 255) + (4 / 512 - 2).
    want = ALL_LEVELS.astype(np.float32) * np.float32(4 / 255) + np.float32(4 / 512 - 2)
    got = dequantize(ALL_LEVELS)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    # and it is that formula to float32 precision when evaluated exactly
    np.testing.assert_allclose(got, np.arange(256) * 4 / 255 + 4 / 512 - 2, rtol=0, atol=1e-6)
    assert got[0] == pytest.approx(-1.9921875)
    assert got[255] == pytest.approx(2.0078125)


def test_dequantize_in_float64_and_of_mean_levels() -> None:
    """The statistics' float64 variant is the exact formula; a mean of levels dequantizes to the
    mean of the dequantized frames (the map is affine)."""
    got = dequantize(ALL_LEVELS, np.float64)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.arange(256) * (4 / 255) + (4 / 512 - 2))
    q = np.random.default_rng(1).integers(0, 256, (9, AUDIO_DIM), dtype=np.uint8)
    mean_of_frames = dequantize(q, np.float64).mean(0)
    np.testing.assert_allclose(dequantize(q.mean(0), np.float64), mean_of_frames, atol=1e-12)


def test_dequantize_keeps_shape() -> None:
    q = np.random.default_rng(0).integers(0, 256, (7, RGB_DIM), dtype=np.uint8)
    d = dequantize(q)
    assert d.shape == (7, RGB_DIM)
    np.testing.assert_array_equal(d[3], dequantize(q[3]))


def test_quantize_round_trip_every_level() -> None:
    np.testing.assert_array_equal(quantize(dequantize(ALL_LEVELS)), ALL_LEVELS)
    q = np.random.default_rng(1).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    out = quantize(dequantize(q))
    assert out.dtype == np.uint8 and out.shape == q.shape
    np.testing.assert_array_equal(out, q)


def test_quantize_nearest_level_and_clipping() -> None:
    step = 4 / 255
    levels = dequantize(ALL_LEVELS).astype(np.float64)
    # a value a third of a step above a level goes back to that level
    np.testing.assert_array_equal(quantize(levels[:-1] + step / 3), ALL_LEVELS[:-1])
    np.testing.assert_array_equal(quantize(levels[1:] - step / 3), ALL_LEVELS[1:])
    np.testing.assert_array_equal(quantize([-100.0, -2.5, 2.5, 1e9]), [0, 0, 255, 255])
    # dequantize(quantize(x)) is within half a step of x inside the range
    x = np.random.default_rng(2).uniform(-1.99, 2.0, 1000)
    assert np.max(np.abs(dequantize(quantize(x)) - x)) <= step / 2 + 1e-6


@pytest.mark.parametrize(("frames", "segs"), [(0, 0), (4, 0), (5, 1), (9, 1), (10, 2), (300, 60)])
def test_num_segments(frames: int, segs: int) -> None:
    assert num_segments(frames) == segs
    starts = segment_starts(frames)
    assert starts.dtype == np.int64
    np.testing.assert_array_equal(starts, np.arange(segs) * 5)


def test_num_segments_negative_is_zero() -> None:
    assert num_segments(-3) == 0
    assert segment_starts(-3).shape == (0,)


def test_segment_id_round_trip() -> None:
    assert segment_id("Ab3x", 35) == "Ab3x:35"
    assert parse_segment_id("Ab3x:35") == ("Ab3x", 35)
    # ids may themselves contain ':' (the start is after the last one)
    assert parse_segment_id(segment_id("a:b", 5)) == ("a:b", 5)
    assert segment_id("v", np.int64(10)) == "v:10"  # type: ignore[arg-type]  # numpy ints work


@pytest.mark.parametrize("bad", ["", "abc", "abc:", ":5", "abc:x5", "abc:5.0"])
def test_parse_segment_id_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="malformed segment token"):
        parse_segment_id(bad)


def _video(frames: int, **kw: object) -> Video:
    return Video(
        id="v",
        rgb=kw.pop("rgb", np.zeros((frames, RGB_DIM), np.uint8)),  # type: ignore[arg-type]
        audio=kw.pop("audio", np.ones((frames, AUDIO_DIM), np.uint8)),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_video_defaults_and_features() -> None:
    v = _video(12)
    assert v.num_frames == 12 and v.num_segments == 2 and not v.is_rated
    assert v.labels.dtype == np.int64 and v.labels.shape == (0,)
    assert v.segment_scores.dtype == np.float32
    f = v.features()
    assert f.shape == (12, FEATURE_DIM) and f.dtype == np.float32
    np.testing.assert_array_equal(f[:, :RGB_DIM], dequantize(v.rgb))
    np.testing.assert_array_equal(f[:, RGB_DIM:], dequantize(v.audio))
    q = v.quantized()
    assert q.shape == (12, FEATURE_DIM) and q.dtype == np.uint8
    np.testing.assert_array_equal(quantize(f), q)


def test_video_rated() -> None:
    v = _video(
        10,
        segment_labels=np.array([3], np.int64),
        segment_starts=np.array([5], np.int64),
        segment_scores=np.array([1.0], np.float32),
    )
    assert v.is_rated


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"rgb": np.zeros((3, 1000), np.uint8)}, "rgb must be"),
        ({"audio": np.zeros((3, 127), np.uint8)}, "audio must be"),
        ({"audio": np.zeros((4, AUDIO_DIM), np.uint8)}, "3 rgb frames but 4 audio frames"),
        ({"rgb": np.zeros(RGB_DIM, np.uint8)}, "rgb must be"),
        (
            {"segment_labels": np.array([1, 2]), "segment_starts": np.array([0])},
            "differ in length",
        ),
    ],
)
def test_video_validation(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        _video(3, **kw)
