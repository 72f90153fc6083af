"""The simdjson fast path for JSON-float frames (``service.api.bodies``) gives the generic parser's
request, and hands every body that is not a plain case to it; orjson answers parse to the same
values as ``json.dumps``'s."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from service.api import schemas
from service.api.bodies import parse_frames_body
from service.api.errors import ApiError
from service.api.responses import dumps
from service.api.routes import _parse
from service.decode import InputError, decode_video

RNG = np.random.default_rng(0)
RGB = np.round(RNG.uniform(-2, 2, (10, 1024)), 6).tolist()
AUDIO = np.round(RNG.uniform(-2, 2, (10, 128)), 6).tolist()


def generic(body: bytes) -> Any:
    return _parse(body, schemas.LocalizeRequest)


class Recorder:
    """The fallback parser, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, body: bytes) -> Any:
        self.calls += 1
        return generic(body)


def encode(**fields: Any) -> bytes:
    return json.dumps({"rgb": RGB, "audio": AUDIO, **fields}).encode()


@pytest.mark.parametrize(
    "fields",
    [{}, {"video_id": "v[1]", "classes": [3, 1], "max_segments": 4}, {"index": False}],
)
def test_plain_json_frames_take_the_fast_path_and_decode_to_the_same_frames(
    fields: dict[str, Any],
) -> None:
    body = encode(**fields)
    fallback = Recorder()
    fast = parse_frames_body(body, schemas.LocalizeRequest, fallback)
    slow = generic(body)
    assert fallback.calls == 0
    assert isinstance(fast.rgb, np.ndarray) and fast.rgb.shape == (10, 1024)
    assert fast.model_dump(exclude={"rgb", "audio"}) == slow.model_dump(exclude={"rgb", "audio"})
    assert np.array_equal(decode_video(fast.rgb, fast.audio), decode_video(slow.rgb, slow.audio))


def _ragged() -> bytes:
    rows = [list(r) for r in RGB]
    rows[0].append(0.5)
    rows[1].pop()
    return json.dumps({"rgb": rows, "audio": AUDIO}).encode()


def _nested_same_count() -> bytes:  # a row whose numbers count stays 1024 but one is [x]
    rows = [list(r) for r in RGB]
    rows[2][5] = [rows[2][5]]
    return json.dumps({"rgb": rows, "audio": AUDIO}).encode()


def _with_bool() -> bytes:
    rows = [list(r) for r in RGB]
    rows[0][0] = True
    return json.dumps({"rgb": rows, "audio": AUDIO}).encode()


ODD_BODIES = {
    "ragged rows": _ragged(),
    "nested number": _nested_same_count(),
    "a boolean": _with_bool(),
    "NaN literal": encode().replace(b"[[", b"[[NaN, ", 1),
    "duplicate key": encode()[:-1] + b', "rgb": [[1.0]]}',
    "escaped id": encode(video_id="a\\u005bb"),
    "huge number": encode().replace(b"[[", b"[[1e400, ", 1),
    "not an object": json.dumps([RGB]).encode(),
    "invalid JSON": encode()[:-2],
    "unknown field": encode(colour="red"),
}


@pytest.mark.parametrize("name", list(ODD_BODIES))
def test_bodies_that_are_not_plain_get_the_generic_parsers_answer(name: str) -> None:
    body = ODD_BODIES[name]
    fallback = Recorder()
    try:
        expected: Any = generic(body)
        expected = (decode_video(expected.rgb, expected.audio), None)
    except (ValueError, ValidationError, InputError, ApiError) as e:
        expected = (None, type(e))
    try:
        req = parse_frames_body(body, schemas.LocalizeRequest, fallback)
        got: Any = (decode_video(req.rgb, req.audio), None)
    except (ValueError, ValidationError, InputError, ApiError) as e:
        got = (None, type(e))
    if name == "unknown field":  # the fast path validates the other fields with the same model
        assert got[1] is expected[1] is ValidationError
        return
    assert fallback.calls == 1, name
    assert got[1] is expected[1]
    if expected[0] is not None:
        assert np.array_equal(got[0], expected[0])


def test_orjson_answers_parse_to_what_json_dumps_writes() -> None:
    data = {"a": [1, 2.5, 1e-7, 1e16, -0.0], "b": None, "c": True, "é": "ünï", "n": {"x": []}}
    assert json.loads(dumps(data)) == json.loads(json.dumps(data))
    assert dumps({"k": [1, 0.25]}) == json.dumps({"k": [1, 0.25]}, separators=(",", ":")).encode()


def test_a_json_float_past_float32_is_named_as_sent_on_the_fast_path_too() -> None:
    rows = [list(r) for r in AUDIO]
    rows[3][7] = 1e300
    body = json.dumps({"rgb": RGB, "audio": rows}).encode()
    for req in (parse_frames_body(body, schemas.LocalizeRequest, generic), generic(body)):
        with pytest.raises(InputError, match=r"audio\[3\]\[7\] is 1e\+300"):
            decode_video(req.rgb, req.audio)
