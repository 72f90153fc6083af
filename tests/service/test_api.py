"""The HTTP API with the embedded store: every endpoint, every bad input (4xx that names it)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.decode import encode_frames
from service.yt8m import AUDIO_DIM, RGB_DIM, SEGMENT_FRAMES, Video, dequantize

JSON = {"Content-Type": "application/json"}


def error(r: Any, status: int, *words: str) -> dict[str, Any]:
    """Assert an error answer: the status, a JSON body with ``detail`` naming ``words``."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"detail", "error"}
    for w in words:
        assert w in body["detail"], (w, body["detail"])
    return body


# ---------------------------------------------------------------------------- /localize
def test_localize_answers_the_contract(
    client: Any,
    test_videos: list[Video],
    make_payload: Any,
    service_bundle: Path,
    api_token: str,
) -> None:
    # a binary:logistic GBM scores probabilities; a ranking objective margins (docs/contracts.md)
    manifest = json.loads((service_bundle / "manifest.json").read_text())
    probabilities = manifest["ccrl"]["params"].get("objective") == "binary:logistic"
    v = test_videos[0]
    auth = {"Authorization": f"Bearer {api_token}"}  # indexing a video needs the token
    r = client.post("/localize", json=make_payload(v, video_id=v.id, max_segments=4), headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert body["video_id"] == v.id
    assert body["num_segments"] == v.num_frames // SEGMENT_FRAMES
    assert body["model_version"] == client.get("/readyz").json()["model_version"]
    assert body["indexed"] is True
    assert 1 <= len(body["classes"]) <= 20
    names = {c["class_id"]: c["name"] for c in client.get("/classes").json()["classes"]}
    vscores = [c["video_score"] for c in body["classes"]]
    assert vscores == sorted(vscores, reverse=True)  # candidates by video score
    for c in body["classes"]:
        assert c["name"] == names[c["class_id"]]
        segs = c["segments"]
        assert 1 <= len(segs) <= 4
        scores = [s["score"] for s in segs]
        assert scores == sorted(scores, reverse=True)  # best first
        for s in segs:
            assert s["start"] % SEGMENT_FRAMES == 0 and s["end"] == s["start"] + SEGMENT_FRAMES
            assert math.isfinite(s["score"])
            assert 0.0 <= s["score"] <= 1.0 or not probabilities
    timing = r.headers["server-timing"]
    for stage in ("decode", "bank", "candidate", "features", "gbm", "rank", "index"):
        assert f"{stage};dur=" in timing


def test_every_payload_encoding_gives_the_same_scores(
    client: Any, test_videos: list[Video], make_payload: Any
) -> None:
    v = test_videos[1]
    answers = [
        client.post("/localize", json=make_payload(v, kind)).json()
        for kind in ("uint8", "float32", "json")
    ]
    assert answers[0]["classes"] == answers[1]["classes"] == answers[2]["classes"]
    assert answers[0]["video_id"] is None and answers[0]["indexed"] is False


def test_class_restriction_and_limits(client: Any, test_videos: list[Video], make_payload: Any):
    v = test_videos[2]
    full = client.post("/localize", json=make_payload(v)).json()
    non_candidate = next(
        c["class_id"]
        for c in client.get("/classes").json()["classes"]
        if c["class_id"] not in {x["class_id"] for x in full["classes"]}
    )
    want = [non_candidate, full["classes"][0]["class_id"]]
    r = client.post("/localize", json=make_payload(v, classes=[*want, want[0]]))
    assert r.status_code == 200
    assert [c["class_id"] for c in r.json()["classes"]] == want  # caller's order, no duplicate
    same = next(c for c in r.json()["classes"] if c["class_id"] == want[1])
    assert same == full["classes"][0]
    one = client.post("/localize", json=make_payload(v, max_classes=1, max_segments=2)).json()
    assert len(one["classes"]) == 1 and len(one["classes"][0]["segments"]) == 2
    assert one["classes"][0]["class_id"] == full["classes"][0]["class_id"]


def test_index_false_does_not_index(client: Any, test_videos: list[Video], make_payload: Any):
    v = test_videos[3]
    body = client.post("/localize", json=make_payload(v, video_id=v.id, index=False)).json()
    assert body["indexed"] is False
    c = body["classes"][0]["class_id"]
    assert client.get(f"/classes/{c}/top-segments").json()["total"] == 0


# ---------------------------------------------------------------------------- bad /localize input
def _bad_bodies(v: Video) -> list[tuple[str, Any, int, tuple[str, ...]]]:
    rgb, audio = encode_frames(v.rgb), encode_frames(v.audio)
    f = v.num_frames
    nan_audio = dequantize(v.audio)
    nan_audio[2, 5] = np.nan
    inf_rgb = dequantize(v.rgb[:6])
    inf_rgb[0, 0] = np.inf
    return [
        (
            "wrong rgb width",
            {"rgb": encode_frames(v.rgb[:, :1000]), "audio": audio},
            422,
            ("rgb", "1000 values per frame", "expected 1024"),
        ),
        (
            "wrong audio width",
            {"rgb": rgb, "audio": encode_frames(v.audio[:, :100])},
            422,
            ("audio", "expected 128"),
        ),
        (
            "frame counts differ",
            {"rgb": rgb, "audio": encode_frames(v.audio[:-5])},
            422,
            ("audio", f"{f - 5} audio frames but {f} rgb frames"),
        ),
        ("NaN", {"rgb": rgb, "audio": encode_frames(nan_audio)}, 422, ("audio[2][5] is NaN",)),
        (
            "Inf in JSON floats",
            {"rgb": inf_rgb.tolist(), "audio": dequantize(v.audio[:6]).tolist()},
            422,
            ("rgb[0][0] is Inf",),
        ),
        ("no frames", {"rgb": [], "audio": []}, 422, ("rgb", "no frames")),
        (
            "fewer than 5 frames",
            {"rgb": encode_frames(v.rgb[:4]), "audio": encode_frames(v.audio[:4])},
            422,
            ("rgb", "4 frame(s) is fewer than 5"),
        ),
        (
            "more than the cap",
            {
                "rgb": encode_frames(np.zeros((301, RGB_DIM), np.uint8)),
                "audio": encode_frames(np.zeros((301, AUDIO_DIM), np.uint8)),
            },
            422,
            ("rgb.shape", "301 frames", "cap of 300"),
        ),
        (
            "bad base64",
            {"rgb": {**rgb, "b64": "*not*base64*"}, "audio": audio},
            422,
            ("rgb.b64", "not valid base64"),
        ),
        (
            "shape vs bytes",
            {"rgb": {**rgb, "shape": [f + 1, RGB_DIM]}, "audio": audio},
            422,
            ("rgb", f"shape [{f + 1}, 1024]", "bytes"),
        ),
        (
            "unsupported dtype",
            {"rgb": {**rgb, "dtype": "int16"}, "audio": audio},
            422,
            ("rgb.dtype", "unsupported dtype 'int16'"),
        ),
        (
            "unknown class",
            {"rgb": rgb, "audio": audio, "classes": [0, 99999]},
            422,
            ("classes", "unknown class id(s) 99999"),
        ),
        ("negative class", {"rgb": rgb, "audio": audio, "classes": [-1]}, 422, ("classes", "-1")),
        ("empty class list", {"rgb": rgb, "audio": audio, "classes": []}, 422, ("classes",)),
        ("bad max_classes", {"rgb": rgb, "audio": audio, "max_classes": 0}, 422, ("max_classes",)),
        (
            "bad max_segments",
            {"rgb": rgb, "audio": audio, "max_segments": -3},
            422,
            ("max_segments",),
        ),
        (
            "string max_classes",
            {"rgb": rgb, "audio": audio, "max_classes": "5"},
            422,
            ("max_classes",),
        ),
        ("missing audio", {"rgb": rgb}, 422, ("audio", "required")),
        ("unknown field", {"rgb": rgb, "audio": audio, "colour": 1}, 422, ("colour",)),
        ("empty video id", {"rgb": rgb, "audio": audio, "video_id": ""}, 422, ("video_id",)),
        ("frames not array", {"rgb": "abc", "audio": audio}, 422, ("rgb",)),
    ]


def test_every_bad_localize_input_is_a_4xx_naming_the_problem(
    client: Any, test_videos: list[Video]
) -> None:
    v = test_videos[0]
    for name, body, status, words in _bad_bodies(v):
        r = client.post(
            "/localize", content=json.dumps(body), headers={"content-type": "application/json"}
        )
        try:
            error(r, status, *words)
        except AssertionError as e:
            raise AssertionError(f"case {name!r}: {e}") from None


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"rgb": [[1.0, 2.0', ("not valid JSON",)),
        (b"", ("empty body",)),
        (b"[1, 2]", ("JSON object", "list")),
        (b"\xff\xfe", ("not valid JSON",)),
    ],
)
def test_malformed_json_is_400(client: Any, raw: bytes, words: tuple[str, ...]) -> None:
    error(client.post("/localize", content=raw, headers=JSON), 400, *words)


def test_body_over_the_limit_is_413(make_settings: Any, test_videos: list[Video], make_payload):
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    with TestClient(create_app(make_settings(max_body_bytes=50_000))) as c:
        body = json.dumps(make_payload(test_videos[0], "json")).encode()
        assert len(body) > 50_000
        error(c.post("/localize", content=body, headers=JSON), 413, "over the limit of 50000")

        def chunks():  # no content-length: the limit applies to the streamed bytes
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]

        error(c.post("/localize", content=chunks(), headers=JSON), 413, "over the limit")
        ok = make_payload(test_videos[0], "uint8")
        ok["rgb"] = encode_frames(test_videos[0].rgb[:20])
        ok["audio"] = encode_frames(test_videos[0].audio[:20])
        assert c.post("/localize", json=ok).status_code == 200  # small bodies still pass


# ---------------------------------------------------------------------------- top-segments
def test_top_segments_across_the_corpus(
    client: Any, test_videos: list[Video], make_payload: Any, api_token: str
) -> None:
    auth = {"Authorization": f"Bearer {api_token}"}
    answers = [
        client.post("/localize", json=make_payload(v, video_id=v.id), headers=auth).json()
        for v in test_videos[:4]
    ]
    c = answers[0]["classes"][0]["class_id"]
    expected = sorted(
        (
            (s["score"], a["video_id"], s["start"])
            for a in answers
            for k in a["classes"]
            if k["class_id"] == c
            for s in k["segments"]
        ),
        reverse=True,
    )
    r = client.get(f"/classes/{c}/top-segments", params={"limit": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["class_id"] == c and body["name"] == answers[0]["classes"][0]["name"]
    assert body["total"] >= len(expected)
    got = [(s["score"], s["video_id"], s["start"]) for s in body["segments"]]
    assert [g[0] for g in got] == [e[0] for e in expected[:5]]
    assert all(s["end"] == s["start"] + 5 for s in body["segments"])
    page2 = client.get(f"/classes/{c}/top-segments", params={"limit": 2, "offset": 1}).json()
    assert page2["segments"] == body["segments"][1:3]
    # re-scoring a video (explicitly) replaces its entries instead of adding to them
    v = test_videos[0]
    client.post("/localize", json=make_payload(v, video_id=v.id, overwrite=True), headers=auth)
    assert client.get(f"/classes/{c}/top-segments").json()["total"] == body["total"]


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/classes/99999/top-segments", 404, ("class 99999 is not in the vocabulary",)),
        ("/classes/-1/top-segments", 404, ("class -1",)),
        ("/classes/abc/top-segments", 422, ("class_id", "integer")),
        ("/classes/0/top-segments?limit=0", 422, ("limit",)),
        ("/classes/0/top-segments?limit=5000", 422, ("limit", "maximum page of 1000")),
        ("/classes/0/top-segments?limit=x", 422, ("limit",)),
        ("/classes/0/top-segments?offset=-1", 422, ("offset",)),
        ("/classes/0/top-segments?offset=100000", 422, ("offset", "index cap")),
    ],
)
def test_bad_top_segments_requests(client: Any, path: str, status: int, words: tuple[str, ...]):
    error(client.get(path), status, *words)


# ---------------------------------------------------------------------------- labels
def _labels_body(v: Video, segments: list[dict[str, int]], **extra: Any) -> dict[str, Any]:
    return {
        "video_id": v.id,
        "rgb": encode_frames(v.rgb),
        "audio": encode_frames(v.audio),
        "segments": segments,
        **extra,
    }


def test_labels_need_the_token(client: Any, test_videos: list[Video], api_token: str) -> None:
    v = test_videos[0]
    body = _labels_body(v, [{"start": 0, "label": 1}])
    r = client.post("/classes/1/labels", json=body)
    error(r, 401, "Authorization: Bearer")
    assert r.headers["www-authenticate"] == "Bearer"
    error(
        client.post("/classes/1/labels", json=body, headers={"Authorization": "Bearer nope"}),
        401,
        "invalid bearer token",
    )
    r = client.post(
        "/classes/1/labels", json=body, headers={"Authorization": f"Bearer {api_token}"}
    )
    assert r.status_code == 201, r.text


def test_writes_are_refused_without_a_configured_token(
    make_settings: Any, test_videos: list[Video]
) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    with TestClient(create_app(make_settings(api_token=None))) as c:
        body = _labels_body(test_videos[0], [{"start": 0, "label": 1}])
        r = c.post("/classes/1/labels", json=body, headers={"Authorization": "Bearer x"})
        error(r, 403, "writes are disabled", "CCRL_API_TOKEN")


@pytest.fixture
def sim_client(make_settings: Any, sim_bundle: Path) -> Iterator[Any]:
    """A TestClient on the bundle whose GBM leans on the similarity features: whether a tiny
    GBM splits on them at all depends on the tiny corpus, and this test is about the bank."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    with TestClient(create_app(make_settings(bundle=sim_bundle))) as c:
        yield c


def test_labels_change_the_bank_and_the_scores_at_once(
    sim_client: Any, test_videos: list[Video], make_payload: Any, api_token: str
) -> None:
    client = sim_client
    auth = {"Authorization": f"Bearer {api_token}"}
    v, other = test_videos[0], test_videos[1]
    c = client.post("/localize", json=make_payload(other)).json()["classes"][0]["class_id"]
    before_bank = next(x for x in client.get("/classes").json()["classes"] if x["class_id"] == c)
    before = client.post("/localize", json=make_payload(other, classes=[c])).json()
    segs = [{"start": 5 * i, "label": 1} for i in range(3)] + [{"start": 15, "label": 0}]
    r = client.post(f"/classes/{c}/labels", json=_labels_body(v, segs), headers=auth)
    assert r.status_code == 201
    out = r.json()
    assert out["added"] == 4 and out["class_id"] == c and out["bank_version"] == 1
    assert out["bank"] == {
        "positive": before_bank["bank"]["positive"] + 3,
        "negative": before_bank["bank"]["negative"] + 1,
    }
    after_bank = next(x for x in client.get("/classes").json()["classes"] if x["class_id"] == c)
    assert after_bank["bank"] == out["bank"]
    after = client.post("/localize", json=make_payload(other, classes=[c])).json()
    assert after["classes"][0]["segments"] != before["classes"][0]["segments"]


def test_labels_are_relabelled_and_removed_and_a_missing_one_is_404(
    client: Any, test_videos: list[Video], api_token: str
) -> None:
    auth = {"Authorization": f"Bearer {api_token}"}
    v, c = test_videos[2], 1
    counts = client.get("/classes").json()["classes"][c]["bank"]
    segs = [{"start": 0, "label": 1}, {"start": 5, "label": 0}]
    r = client.post(f"/classes/{c}/labels", json=_labels_body(v, segs), headers=auth)
    assert r.status_code == 201 and r.json()["relabelled"] == 0
    r = client.post(
        f"/classes/{c}/labels", json=_labels_body(v, [{"start": 5, "label": 1}]), headers=auth
    )
    assert r.json()["relabelled"] == 1
    assert r.json()["bank"] == {"positive": counts["positive"] + 2, "negative": counts["negative"]}

    def remove(starts: list[int], headers: dict[str, str] | None = auth) -> Any:
        body = {"video_id": v.id, "starts": starts}
        return client.request("DELETE", f"/classes/{c}/labels", json=body, headers=headers)

    error(remove([0], headers=None), 401, "Authorization: Bearer")
    r = remove([0])
    assert r.status_code == 200, r.text
    assert r.json()["removed"] == [{"start": 0, "end": 5, "label": 1}]
    assert r.json()["bank"] == {"positive": counts["positive"] + 1, "negative": counts["negative"]}
    _check_against_openapi(client, "delete", "/classes/{class_id}/labels", r)
    missing = remove([5, 0])  # 0 is gone already: nothing is removed, 5 stays
    error(missing, 404, f"class {c} has no label for video {v.id!r} at start 0", "nothing")
    _check_against_openapi(client, "delete", "/classes/{class_id}/labels", missing)
    assert client.get("/classes").json()["classes"][c]["bank"] == r.json()["bank"]
    error(remove([3]), 422, "starts[0]", "multiple of 5")
    error(remove([5, 5]), 422, "listed twice")
    error(remove([]), 422, "starts")
    body = {"video_id": v.id, "starts": [5]}
    error(client.request("DELETE", "/classes/99999/labels", json=body, headers=auth), 404)
    assert remove([5]).json()["bank"] == counts


def test_bad_label_requests(client: Any, test_videos: list[Video], api_token: str) -> None:
    auth = {"Authorization": f"Bearer {api_token}"}
    v = test_videos[0]
    last = (v.num_frames // 5) * 5
    cases = [
        (
            "/classes/99999/labels",
            _labels_body(v, [{"start": 0, "label": 1}]),
            404,
            ("class 99999",),
        ),
        (
            "/classes/1/labels",
            _labels_body(v, [{"start": 3, "label": 1}]),
            422,
            ("segments[0].start", "multiple of 5"),
        ),
        (
            "/classes/1/labels",
            _labels_body(v, [{"start": last, "label": 1}]),
            422,
            ("segments[0].start", "past the last whole segment"),
        ),
        (
            "/classes/1/labels",
            _labels_body(v, [{"start": 0, "label": 2}]),
            422,
            ("segments[0].label",),
        ),
        ("/classes/1/labels", _labels_body(v, []), 422, ("segments",)),
        (
            "/classes/1/labels",
            _labels_body(v, [{"start": 0, "label": 1}, {"start": 0, "label": 0}]),
            422,
            ("start 0 is listed twice",),
        ),
        (
            "/classes/1/labels",
            {**_labels_body(v, [{"start": 0, "label": 1}]), "video_id": None},
            422,
            ("video_id",),
        ),
        (
            "/classes/1/labels",
            {
                **_labels_body(v, [{"start": 0, "label": 1}]),
                "rgb": {"b64": "??", "dtype": "uint8", "shape": [5, 1024]},
            },
            422,
            ("rgb.b64",),
        ),
    ]
    for path, body, status, words in cases:
        error(client.post(path, json=body, headers=auth), status, *words)
    error(
        client.post("/classes/1/labels", content=b"{", headers={**auth, **JSON}),
        400,
        "not valid JSON",
    )


# ---------------------------------------------------------------------------- catalogue, health
def test_classes_health_ready_and_metrics(
    client: Any, test_videos: list[Video], make_payload: Any, api_token: str
) -> None:
    classes = client.get("/classes").json()["classes"]
    assert [c["class_id"] for c in classes] == list(range(len(classes)))
    assert all(set(c["bank"]) == {"positive", "negative"} for c in classes)
    assert sum(c["bank"]["positive"] for c in classes) > 0  # the bundle's bank
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["store"] == "memory" and not ready["degraded"]
    v = test_videos[0]
    auth = {"Authorization": f"Bearer {api_token}"}
    client.post("/localize", json=make_payload(v, video_id=v.id), headers=auth)
    client.get("/classes/999999/top-segments")
    text = client.get("/metrics").text
    for line in (
        'ccrl_http_requests_total{method="POST",route="/localize",status="200"} 1.0',
        'ccrl_http_requests_total{method="GET",route="/classes/{class_id}/top-segments",'
        'status="404"} 1.0',
        "ccrl_degraded 0.0",
        "ccrl_candidate_classes_per_request_count 1.0",
        "ccrl_pairs_per_request_count 1.0",
    ):
        assert line in text, line
    for stage in ("decode", "candidate", "features", "gbm", "rank", "index", "bank"):
        assert f'ccrl_stage_duration_seconds_count{{stage="{stage}"}}' in text
    assert "ccrl_model_info{name=" in text and "ccrl_indexed_segments_total" in text
    assert 'ccrl_bank_segments{label="positive"}' in text
    assert "/classes/999999" not in text  # route templates, never raw paths


def test_openapi_documents_the_routes(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in (
        "/localize",
        "/classes/{class_id}/top-segments",
        "/classes/{class_id}/labels",
        "/classes",
        "/healthz",
        "/readyz",
    ):
        assert p in paths


# ---------------------------------------------------------------------------- one response shape
def _conforms(value: Any, schema: dict[str, Any], defs: dict[str, Any], where: str = "$") -> None:
    """Assert that ``value`` fits ``schema`` (the JSON Schema subset /openapi.json uses)."""
    assert schema, f"{where}: no schema documented"
    if "$ref" in schema:
        return _conforms(value, defs[schema["$ref"].rsplit("/", 1)[1]], defs, where)
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            try:
                return _conforms(value, option, defs, where)
            except AssertionError:
                pass
        raise AssertionError(f"{where}: {value!r} fits none of {schema['anyOf']}")
    if "enum" in schema:
        assert value in schema["enum"], (where, value, schema["enum"])
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    kind = schema["type"]
    if kind in ("integer", "number"):
        allowed = int if kind == "integer" else (int, float)
        assert isinstance(value, allowed) and not isinstance(value, bool), (where, value, kind)
    else:
        assert isinstance(value, kinds[kind]), (where, value, kind)
    if kind == "object":
        props = schema.get("properties", {})
        assert set(schema.get("required", ())) <= set(value), (where, "missing", value.keys())
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), (where, "undocumented", set(value) - set(props))
        for k, v in value.items():
            if k in props:
                _conforms(v, props[k], defs, f"{where}.{k}")
    if kind == "array":
        for i, item in enumerate(value):
            _conforms(item, schema["items"], defs, f"{where}[{i}]")
    return None


def _check_against_openapi(client: Any, method: str, template: str, r: Any) -> None:
    doc = client.get("/openapi.json").json()
    answer = doc["paths"][template][method]["responses"][str(r.status_code)]
    schema = answer["content"]["application/json"]["schema"]
    _conforms(r.json(), schema, doc["components"]["schemas"])


def test_every_answer_is_the_shape_openapi_documents(
    client: Any, test_videos: list[Video], make_payload: Any, api_token: str
) -> None:
    v = test_videos[0]
    auth = {"Authorization": f"Bearer {api_token}"}
    r = client.post("/localize", json=make_payload(v, video_id=v.id), headers=auth)
    assert r.status_code == 200 and r.json()["classes"][0]["segments"]
    c = r.json()["classes"][0]["class_id"]
    answers = [
        ("post", "/localize", r),
        ("get", "/classes/{class_id}/top-segments", client.get(f"/classes/{c}/top-segments")),
        (
            "post",
            "/classes/{class_id}/labels",
            client.post(
                f"/classes/{c}/labels",
                json=_labels_body(v, [{"start": 0, "label": 1}]),
                headers=auth,
            ),
        ),
        ("get", "/classes", client.get("/classes")),
        ("get", "/healthz", client.get("/healthz")),
        ("get", "/readyz", client.get("/readyz")),
        ("get", "/classes/{class_id}/top-segments", client.get("/classes/99999/top-segments")),
        ("post", "/localize", client.post("/localize", content=b"{", headers=JSON)),
        ("post", "/localize", client.post("/localize", json={"rgb": []})),
    ]
    assert [a[2].status_code for a in answers] == [200, 200, 201, 200, 200, 200, 404, 400, 422]
    assert answers[1][2].json()["segments"]
    for method, template, answer in answers:
        _check_against_openapi(client, method, template, answer)


def test_an_unreachable_index_answers_a_documented_warning(
    make_settings: Any,
    redis_server: Any,
    test_videos: list[Video],
    make_payload: Any,
    api_token: str,
) -> None:
    import dataclasses

    from fastapi.testclient import TestClient

    from service.api.app import build_runtime, create_app
    from service.stores.redis import RedisBackend, RedisIndexStore

    rt = build_runtime(make_settings())
    rt = dataclasses.replace(rt, index=RedisIndexStore(RedisBackend(redis_server.url)))
    redis_server.stop()
    v = test_videos[0]
    with TestClient(create_app(runtime=rt)) as c:
        auth = {"Authorization": f"Bearer {api_token}"}
        r = c.post("/localize", json=make_payload(v, video_id=v.id), headers=auth)
        assert r.status_code == 200 and r.json()["indexed"] is False
        assert r.json()["warnings"][0].startswith("not indexed: the index store is unavailable")
        _check_against_openapi(c, "post", "/localize", r)
    rt.close()


def test_every_route_is_503_until_the_model_is_loaded(make_settings: Any) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    c = TestClient(create_app(make_settings()))  # no `with`: the lifespan never ran
    for method, path in (
        ("post", "/localize"),
        ("get", "/classes/1/top-segments"),
        ("post", "/classes/1/labels"),
        ("get", "/classes"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ):
        body = error(c.request(method, path, headers=JSON), 503, "the model is not loaded yet")
        assert body["error"] == "not_ready"
    assert c.get("/healthz").json() == {"status": "ok"}
