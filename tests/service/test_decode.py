"""Payload decoding: JSON float arrays and base64 uint8 / float32, and every bad input."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from service.decode import InputError, decode_frames, decode_video, encode_frames
from service.yt8m import AUDIO_DIM, FEATURE_DIM, RGB_DIM, dequantize


def _frames(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, d), dtype=np.uint8)


def test_uint8_b64_is_dequantized_like_the_starter_code() -> None:
    q = _frames(10, RGB_DIM)
    out = decode_frames(encode_frames(q), "rgb", RGB_DIM)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, dequantize(q))


def test_float32_b64_and_json_arrays_decode_to_the_same_values() -> None:
    x = dequantize(_frames(7, AUDIO_DIM, seed=1))
    from_b64 = decode_frames(encode_frames(x), "audio", AUDIO_DIM)
    from_json = decode_frames(x.tolist(), "audio", AUDIO_DIM)
    np.testing.assert_array_equal(from_b64, x)
    np.testing.assert_array_equal(from_json, x)


def test_decode_video_concatenates_rgb_then_audio() -> None:
    rgb, audio = _frames(6, RGB_DIM), _frames(6, AUDIO_DIM, seed=2)
    out = decode_video(encode_frames(rgb), encode_frames(audio))
    assert out.shape == (6, FEATURE_DIM)
    np.testing.assert_array_equal(out[:, RGB_DIM:], dequantize(audio))


def _b64(arr: np.ndarray, **over: Any) -> dict[str, Any]:
    p = encode_frames(arr)
    p.update(over)
    return p


GOOD_RGB = _frames(10, RGB_DIM)
GOOD_AUDIO = _frames(10, AUDIO_DIM)


@pytest.mark.parametrize(
    ("rgb", "audio", "field", "words"),
    [
        (
            encode_frames(_frames(10, 1000)),
            encode_frames(GOOD_AUDIO),
            "rgb",
            "1000 values per frame",
        ),
        (encode_frames(GOOD_RGB), encode_frames(_frames(10, 64)), "audio", "expected 128"),
        (encode_frames(GOOD_RGB), encode_frames(_frames(9, AUDIO_DIM)), "audio", "9 audio frames"),
        ([], encode_frames(GOOD_AUDIO), "rgb", "no frames"),
        (encode_frames(_frames(0, RGB_DIM)), encode_frames(GOOD_AUDIO), "rgb", "no frames"),
        (encode_frames(_frames(4, RGB_DIM)), encode_frames(GOOD_AUDIO), "rgb", "fewer than 5"),
        (
            encode_frames(_frames(301, RGB_DIM)),
            encode_frames(GOOD_AUDIO),
            "rgb.shape",
            "cap of 300",
        ),
        (
            dequantize(_frames(301, RGB_DIM)).tolist(),
            encode_frames(GOOD_AUDIO),
            "rgb",
            "cap of 300",
        ),
        (_b64(GOOD_RGB, b64="@@not base64@@"), encode_frames(GOOD_AUDIO), "rgb.b64", "base64"),
        (
            _b64(GOOD_RGB, shape=[11, RGB_DIM]),
            encode_frames(GOOD_AUDIO),
            "rgb",
            "needs 11264 bytes but b64 holds 10240",
        ),
        (_b64(GOOD_RGB, dtype="float64"), encode_frames(GOOD_AUDIO), "rgb.dtype", "float64"),
        (_b64(GOOD_RGB, shape=[10]), encode_frames(GOOD_AUDIO), "rgb.shape", "two integers"),
        (_b64(GOOD_RGB, shape=[10, "x"]), encode_frames(GOOD_AUDIO), "rgb.shape", "two integers"),
        ({"b64": "", "dtype": "uint8"}, encode_frames(GOOD_AUDIO), "rgb", "missing key(s) shape"),
        (_b64(GOOD_RGB, extra=1), encode_frames(GOOD_AUDIO), "rgb", "unknown key(s) extra"),
        ([[0.0] * RGB_DIM] * 5 + [[0.0] * 3], encode_frames(GOOD_AUDIO), "rgb", "equal length"),
        ([["a"] * RGB_DIM] * 5, encode_frames(GOOD_AUDIO), "rgb", "only numbers"),
        ("frames", encode_frames(GOOD_AUDIO), "rgb", "got str"),
        ([1.0] * 10, encode_frames(GOOD_AUDIO), "rgb", "2-D"),
    ],
)
def test_bad_payloads_name_the_field_and_the_problem(
    rgb: Any, audio: Any, field: str, words: str
) -> None:
    with pytest.raises(InputError) as err:
        decode_video(rgb, audio)
    assert err.value.field == field
    assert words in str(err.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_with_their_position(bad: float) -> None:
    x = dequantize(_frames(6, AUDIO_DIM))
    x[3, 17] = bad
    for payload in (encode_frames(x), x.tolist()):
        with pytest.raises(InputError) as err:
            decode_frames(payload, "audio", AUDIO_DIM)
        assert "audio[3][17]" in str(err.value)
        assert ("NaN" if np.isnan(bad) else "Inf") in str(err.value)


@pytest.mark.parametrize(
    ("value", "shown"), [(3.4e38, "3.4e+38"), (2.06, "2.06"), (-2.5, "-2.5"), (1e300, "1e+300")]
)
def test_values_outside_what_youtube8m_features_hold_are_refused(value: float, shown: str) -> None:
    x = dequantize(_frames(6, AUDIO_DIM))
    x[4, 9] = np.float32(value) if abs(value) < 3.5e38 else 0.0
    payloads: list[Any] = [x.tolist()]
    if abs(value) < 3.5e38:  # float32 can hold it
        payloads.append(encode_frames(x))
    payloads[0][4][9] = value  # JSON floats are checked before the float32 cast
    for payload in payloads:
        with pytest.raises(InputError) as err:
            decode_frames(payload, "audio", AUDIO_DIM)
        assert err.value.field == "audio"
        assert "must lie in [-2, 2]" in str(err.value) and "tolerance 0.05" in str(err.value)
        assert f"audio[4][9] is {shown}" in str(err.value)


def test_values_within_the_tolerance_and_every_uint8_level_pass() -> None:
    x = np.full((5, AUDIO_DIM), 2.05, np.float32)
    x[1] = -2.05
    np.testing.assert_array_equal(decode_frames(encode_frames(x), "audio", AUDIO_DIM), x)
    levels = np.tile(np.arange(256, dtype=np.uint8), (5, 1))[:, :AUDIO_DIM]
    levels[:, -1] = 255
    assert decode_frames(encode_frames(levels), "audio", AUDIO_DIM).max() > 2.0


def test_frame_limits_are_configurable() -> None:
    q = _frames(8, AUDIO_DIM)
    with pytest.raises(InputError, match="cap of 6"):
        decode_frames(encode_frames(q), "audio", AUDIO_DIM, max_frames=6)
    with pytest.raises(InputError, match="fewer than 10"):
        decode_frames(encode_frames(q), "audio", AUDIO_DIM, min_frames=10)


def test_float32_b64_is_little_endian_raw_bytes() -> None:
    x = np.arange(5 * AUDIO_DIM, dtype=np.float32).reshape(5, AUDIO_DIM) / 400  # within [-2, 2]
    raw = base64.b64encode(x.astype("<f4").tobytes()).decode()
    out = decode_frames({"b64": raw, "dtype": "float32", "shape": [5, AUDIO_DIM]}, "a", AUDIO_DIM)
    np.testing.assert_array_equal(out, x)


def test_encode_frames_refuses_other_dtypes() -> None:
    with pytest.raises(ValueError, match="float64"):
        encode_frames(np.zeros((5, 3), dtype=np.float64))
