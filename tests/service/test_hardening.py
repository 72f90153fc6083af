"""Bad input and abuse against a real ``ccrl serve`` process: never a 500, nothing stored by a
rejected request, nothing indexed without authorization, limits on heads, bodies, slow and
vanished clients."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.decode import encode_frames
from service.yt8m import Video

CcrlServe = Any  # tests/service/conftest.py: the ``ccrl_serve`` fixture's class
TOKEN = "test-token-0123456789"  # the ``api_token`` fixture's (checked in ``server``)
INDEX_TOKEN = "index-only-token-0123456789"
WRITE = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
INDEX = {"Authorization": f"Bearer {INDEX_TOKEN}", "Content-Type": "application/json"}
ANON = {"Content-Type": "application/json"}
LIMITS = {
    "CCRL_HEADER_TIMEOUT_S": "1.5",
    "CCRL_BODY_TIMEOUT_S": "1.5",
    "CCRL_KEEP_ALIVE_S": "1",
    "CCRL_MAX_HEADER_BYTES": "8192",
    "CCRL_MAX_HEADERS": "24",
    "CCRL_KEEP_ALIVE_REQUESTS": "3",
}


@pytest.fixture(scope="module")
def server(
    sim_bundle: Path, tmp_path_factory: pytest.TempPathFactory, ccrl_serve: Any, api_token: str
) -> Iterator[CcrlServe]:
    """One server for the module: short deadlines, an index token, and the write token given
    with a trailing newline (as read from a file), which the service strips once."""
    assert api_token == TOKEN
    log = tmp_path_factory.mktemp("hardening") / "serve.log"
    env = {**LIMITS, "CCRL_API_TOKEN": TOKEN + "\n", "CCRL_INDEX_TOKEN": INDEX_TOKEN}
    with ccrl_serve(sim_bundle, log, **env) as srv:
        yield srv


def _post(srv: CcrlServe, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{srv.url}{path}", content=content, headers=headers, timeout=60)


def _error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"detail", "error"}, body
    for w in words:
        assert w in body["detail"], (w, body["detail"])


def _index_total(srv: CcrlServe, c: int) -> int:
    return int(httpx.get(f"{srv.url}/classes/{c}/top-segments", timeout=30).json()["total"])


def _bank(srv: CcrlServe) -> list[dict[str, int]]:
    return [c["bank"] for c in httpx.get(f"{srv.url}/classes", timeout=30).json()["classes"]]


def _labels(v: Video, segments: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "video_id": v.id,
        "rgb": encode_frames(v.rgb),
        "audio": encode_frames(v.audio),
        "segments": segments,
        **extra,
    }


# ---------------------------------------------------------------------------- values
def test_huge_finite_frames_are_a_422_and_store_nothing(
    server: CcrlServe, test_videos: list[Video], make_payload: Any
) -> None:
    v = test_videos[0]
    huge = np.full((v.num_frames, v.rgb.shape[1]), 3.4e38, np.float32)
    body = {**make_payload(v, video_id="huge-1", classes=[8]), "rgb": encode_frames(huge)}
    bank = _bank(server)
    _error(_post(server, "/localize", body, WRITE), 422, "rgb", "rgb[0][0] is 3.4e+38", "[-2, 2]")
    assert _index_total(server, 8) == 0
    body.pop("classes")  # without classes too (it used to answer 200, with no classes)
    _error(_post(server, "/localize", body, WRITE), 422, "rgb[0][0] is 3.4e+38")
    as_json = make_payload(v, "json", video_id="huge-2")
    as_json["audio"][3][7] = 1e300  # a JSON float far past float32
    _error(_post(server, "/localize", as_json, WRITE), 422, "audio[3][7] is 1e+300")
    labels = {**_labels(v, [{"start": 0, "label": 1}]), "rgb": encode_frames(huge)}
    _error(_post(server, "/classes/8/labels", labels, WRITE), 422, "rgb[0][0] is 3.4e+38")
    assert _bank(server) == bank and _index_total(server, 8) == 0
    ok = _post(server, "/localize", make_payload(v, video_id="huge-1", classes=[8]), WRITE)
    assert ok.status_code == 200 and ok.json()["indexed"] is True  # nothing held "huge-1"
    assert _index_total(server, 8) == v.num_frames // 5


# ---------------------------------------------------------------------------- index writes
def test_indexing_needs_a_token_and_overwriting_is_explicit(
    server: CcrlServe, test_videos: list[Video], make_payload: Any
) -> None:
    v = test_videos[1]
    body = make_payload(v, video_id="idx-1", classes=[3])
    before = _index_total(server, 3)
    _error(_post(server, "/localize", body, ANON), 401, "idx-1", '"index": false')
    wrong = {**ANON, "Authorization": "Bearer not-the-token-at-all"}
    _error(_post(server, "/localize", body, wrong), 401, "invalid bearer token")
    assert _index_total(server, 3) == before
    unindexed = _post(server, "/localize", {**body, "index": False}, ANON)
    assert unindexed.status_code == 200 and unindexed.json()["indexed"] is False
    first = _post(server, "/localize", body, INDEX)
    assert first.status_code == 200 and first.json()["indexed"] is True
    total = _index_total(server, 3)
    assert total == before + v.num_frames // 5
    _error(_post(server, "/localize", body, INDEX), 409, "idx-1", "already indexed", "overwrite")
    _error(_post(server, "/localize", {**body, "overwrite": True}, ANON), 401)
    again = _post(server, "/localize", {**body, "overwrite": True}, WRITE)
    assert again.status_code == 200 and again.json()["indexed"] is True
    assert _index_total(server, 3) == total  # replaced, not added
    # the index token indexes, nothing else
    _error(
        _post(server, "/classes/3/labels", _labels(v, [{"start": 0, "label": 1}]), INDEX),
        401,
        "invalid bearer token",
    )


def test_request_bodies_must_be_json(
    server: CcrlServe, test_videos: list[Video], make_payload: Any
) -> None:
    v = test_videos[2]
    body = make_payload(v, video_id="ctype-1", classes=[4])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for ctype, words in (
        ("text/plain", ("'text/plain' is not supported", "application/json")),
        ("application/x-www-form-urlencoded", ("application/json",)),
        ("multipart/form-data; boundary=x", ("application/json",)),
        ("application/json; charset=latin-1", ("charset",)),
    ):
        _error(_post(server, "/localize", body, {**auth, "Content-Type": ctype}), 415, *words)
    r = httpx.post(f"{server.url}/localize", content=json.dumps(body), headers=auth, timeout=60)
    _error(r, 415, "missing Content-Type")
    labels = _labels(v, [{"start": 0, "label": 1}])
    _error(_post(server, "/classes/4/labels", labels, {**auth, "Content-Type": "text/plain"}), 415)
    utf8 = {**auth, "Content-Type": "application/json; charset=utf-8"}
    ok = _post(server, "/localize", body, utf8)  # not a 409: no rejected request indexed it
    assert ok.status_code == 200 and ok.json()["indexed"] is True


# ---------------------------------------------------------------------------- integers
def test_integers_beyond_their_bounds_are_422s(
    server: CcrlServe, test_videos: list[Video], make_payload: Any
) -> None:
    v = test_videos[0]
    base = make_payload(v, "uint8")
    big = 2**63
    for extra, field in (
        ({"classes": [big]}, "classes[0]"),
        ({"classes": [9223372036854775808, 1]}, "classes[0]"),
        ({"max_classes": big}, "max_classes"),
        ({"max_segments": 2**64}, "max_segments"),
        ({"max_classes": True}, "max_classes"),
        ({"classes": [1.5]}, "classes[0]"),
    ):
        _error(_post(server, "/localize", {**base, **extra}, ANON), 422, field)
    for seg, field in (
        ({"start": big, "label": 1}, "segments[0].start"),
        ({"start": -5, "label": 1}, "segments[0].start"),
        ({"start": 0, "label": True}, "segments[0].label"),
        ({"start": 0, "label": "1"}, "segments[0].label"),
        ({"start": 0, "label": 2}, "segments[0].label"),
    ):
        _error(_post(server, "/classes/1/labels", _labels(v, [seg]), WRITE), 422, field)
    whole = _post(server, "/classes/1/labels", _labels(v, [{"start": 5.0, "label": 1.0}]), WRITE)
    assert whole.status_code == 201  # 5.0 is the JSON integer 5, as the schema says
    for query, field in ((f"limit={big}", "limit"), (f"offset={big}", "offset")):
        r = httpx.get(f"{server.url}/classes/1/top-segments?{query}", timeout=30)
        _error(r, 422, field)
    _error(httpx.get(f"{server.url}/classes/{big}/top-segments", timeout=30), 404, str(big))


# ---------------------------------------------------------------------------- auth
def test_auth_is_strict(server: CcrlServe, test_videos: list[Video]) -> None:
    v = test_videos[3]
    body = _labels(v, [{"start": 0, "label": 0}])
    for value in (
        f"Bearer  {TOKEN}",  # two spaces
        f"bearer {TOKEN}",  # the scheme as specified
        f"Bearer {TOKEN} x",
        f"Bearer{TOKEN}",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN[:-1]}",
    ):
        _error(_post(server, "/classes/2/labels", body, {**ANON, "Authorization": value}), 401)
    auth = ("authorization", f"Bearer {TOKEN}")
    headers = httpx.Headers([("content-type", "application/json"), auth, auth])
    r = httpx.post(f"{server.url}/classes/2/labels", content=json.dumps(body), headers=headers)
    _error(r, 400, "more than one Authorization header")
    r = httpx.get(f"{server.url}/healthz", headers=[("authorization", "a"), ("authorization", "b")])
    _error(r, 400, "more than one Authorization header")
    # the configured token had a trailing newline (a token file): stripped once, at start-up
    assert _post(server, "/classes/2/labels", body, WRITE).status_code == 201


def test_start_up_refuses_short_tokens(sim_bundle: Path, tmp_path: Path, ccrl_serve: Any) -> None:
    import subprocess

    for name in ("CCRL_API_TOKEN", "CCRL_INDEX_TOKEN"):
        srv = ccrl_serve(sim_bundle, tmp_path / "x.log", **{name: "fifteen-chars-x"})
        proc = subprocess.run(
            [*srv.cmd, "--port", str(srv.port)],
            env=srv.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "refusing to serve" in proc.stderr and name in proc.stderr
        assert "at least 16" in proc.stderr and "fifteen-chars-x" not in proc.stderr


# ---------------------------------------------------------------------------- connections
def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (10 s socket timeout)."""
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open; got {out[:200]!r}") from None
    except ConnectionResetError:
        pass  # closed with unread bytes of ours still in its buffer
    finally:
        sock.close()
    return out


def _status_and_json(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_request_heads_have_a_size_a_count_and_a_deadline(server: CcrlServe) -> None:
    s = server.connect()  # a head that streams in past the limit: refused while it arrives
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    with pytest.raises(OSError):  # the server closes the connection under the sender
        for _ in range(1000):
            s.sendall(b"a" * 65536)
    raw = _read_until_closed(s)  # a reset may discard the answer; when it came, it is a 400
    if raw:
        status, body = _status_and_json(raw)
        assert status == 400 and "request head over 8192 bytes" in body["detail"]
    s = server.connect()  # a head that arrived whole, over the limit
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX: " + b"a" * 9000)
    s.sendall(b"\r\n\r\n")
    status, body = _status_and_json(_read_until_closed(s))
    assert status in (400, 431) and "8192" in body["detail"]
    s = server.connect()
    lines = b"".join(b"X-%d: 1\r\n" % i for i in range(30))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + lines + b"\r\n")
    status, body = _status_and_json(_read_until_closed(s))
    assert status == 431 and "more than the limit of 24" in body["detail"]
    s = server.connect()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the end of the head
    status, body = _status_and_json(_read_until_closed(s))
    assert status == 408 and body["error"] == "request_timeout" and "head" in body["detail"]
    status, body = _status_and_json(_read_until_closed(server.connect()))  # sends nothing
    assert status == 408


def test_a_body_short_of_its_length_is_dropped_after_the_deadline(server: CcrlServe) -> None:
    head = b"POST /localize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    s = server.connect()
    s.sendall(head + b"Content-Length: 1000\r\n\r\n" + b'{"rgb": [[0.1, ')
    status, body = _status_and_json(_read_until_closed(s))
    assert status == 408 and "request body did not arrive within 1.5 s" in body["detail"]
    # a route that answers without reading the body (401) still drops the rest of it
    s = server.connect()
    s.sendall(b"POST /classes/0/labels" + head[14:] + b"Content-Length: 5000\r\n\r\n{")
    raw = _read_until_closed(s)
    assert raw.startswith(b"HTTP/1.1 401 ") and raw.count(b"HTTP/1.1") == 1


def test_idle_keep_alive_connections_are_closed(server: CcrlServe) -> None:
    s = server.connect()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = _read_until_closed(s)  # the answer, then the close once the connection idles
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b'{"status":"ok"}')


def _read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """One whole answer (head, body) of a keep-alive connection, by its Content-Length."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection mid-answer; got {raw[:200]!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if b"content-length" in ln))
    while len(body) < length:
        body += sock.recv(65536)
    return head.lower(), body


def test_a_connection_is_closed_after_its_request_cap(server: CcrlServe) -> None:
    s = server.connect()
    heads = []
    for _ in range(3):  # CCRL_KEEP_ALIVE_REQUESTS=3
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = _read_answer(s)
        assert head.startswith(b"http/1.1 200 ") and body == b'{"status":"ok"}'
        heads.append(head)
    assert [b"connection: close" in h for h in heads] == [False, False, True]
    t0 = time.monotonic()
    assert _read_until_closed(s) == b""  # closed after the third answer, not by the idle timer
    assert time.monotonic() - t0 < 0.9


def test_slow_and_vanishing_clients_leave_the_server_answering_and_its_log_quiet(
    server: CcrlServe,
) -> None:
    head = b"POST /localize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    slow = []
    for i in range(60):  # half stop in the head, half in the body
        s = server.connect()
        s.sendall(head if i % 2 else head + b"Content-Length: 100000\r\n\r\n" + b'{"rgb": [[')
        slow.append(s)
    assert httpx.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ok"}
    for s in slow:  # every one of them goes away at once, mid-request
        s.close()
    deadline = time.monotonic() + 30
    while b"Traceback" not in server.log.read_bytes():
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        gone = [ln for ln in metrics.splitlines() if 'route="/localize",status="499"' in ln]
        if gone and float(gone[0].rsplit(" ", 1)[1]) >= 30:
            break  # the app saw the 30 body readers disconnect
        assert time.monotonic() < deadline, "the disconnects never reached the app"
        time.sleep(0.1)
    log = server.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_connections_beyond_the_cap_are_answered_503(
    sim_bundle: Path, tmp_path: Path, ccrl_serve: Any
) -> None:
    env = {"CCRL_MAX_CONNECTIONS": "4", "CCRL_HEADER_TIMEOUT_S": "120"}
    with ccrl_serve(sim_bundle, tmp_path / "serve.log", **env) as srv:
        held = [srv.connect() for _ in range(4)]
        s = srv.connect()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_until_closed(s).startswith(b"HTTP/1.1 503 ")
        for h in held:
            h.close()
        deadline = time.monotonic() + 30
        while httpx.get(f"{srv.url}/healthz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "still refused after the others left"
            time.sleep(0.1)


def test_the_abuse_benchmark_runs_at_a_tiny_setting(sim_bundle: Path, tmp_path: Path) -> None:
    """``loadtests/bench_abuse.py`` end to end, tiny: every phase reports; speed is not asserted
    (the lead runs it at full size alone)."""
    from loadtests.bench_abuse import main

    out = tmp_path / "abuse.json"
    args = ["--bundle", str(sim_bundle), "--slow", "20", "--oversized", "2", "--head-mb", "1"]
    args += ["--probes", "5", "--header-timeout", "1", "--body-timeout", "1", "--json", str(out)]
    assert main(args) == 0
    res = json.loads(out.read_text())
    assert list(res) == ["idle", "slow", "oversized", "close", "expired"]
    assert all(set(r) == {"p50_ms", "p99_ms", "max_ms"} for r in res.values())
