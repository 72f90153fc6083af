"""Operations on a real ``ccrl serve`` under a bounded concurrent load, checked from outside.

- Hot reload with two workers and Redis: ``POST /admin/reload`` to another bundle, SIGHUP back to
  the configured one, a tampered bundle refused with its reason; not one request fails, every
  worker follows, the Redis keys follow the bundle's namespace.
- SIGTERM with one and with two workers: the request in flight is answered, keep-alive clients get
  ``Connection: close`` and then a refused connection, never a reset; the exit status is 0.
- The master killed with SIGKILL: its workers drain and exit on their own (none is left serving).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.yt8m import Video

pytestmark = pytest.mark.slow


def _bodies(videos: list[Video], make_payload: Any) -> list[bytes]:
    return [json.dumps(make_payload(v, video_id=v.id, overwrite=True)).encode() for v in videos[:4]]


def _versions(url: str, n: int = 6) -> set[str]:
    """The model versions ``n`` answers of ``/readyz`` name (the workers answer in turn)."""
    return {httpx.get(f"{url}/readyz", timeout=10).json()["model_version"] for _ in range(n)}


def _wait_versions(url: str, want: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while _versions(url) != {want}:
        assert time.monotonic() < deadline, f"the workers did not all reach version {want}"
        time.sleep(0.2)


def _tampered(bundle: Path, tmp: Path) -> Path:
    out = tmp / "tampered"
    shutil.copytree(bundle, out)
    with (out / "ccrl.ubj").open("r+b") as f:
        f.seek(20)
        byte = f.read(1)
        f.seek(20)
        f.write(bytes([byte[0] ^ 0xFF]))
    return out


def _reversioned(bundle: Path, tmp: Path, version: str) -> Path:
    """A copy of ``bundle`` under another version (manifest and its sha256 rewritten), as an
    operator's next release of it would be."""
    from training.bundle_writer import write_manifest

    out = tmp / f"bundle-{version}"
    shutil.copytree(bundle, out)
    manifest = json.loads((out / "manifest.json").read_text())
    write_manifest(out, {**manifest, "version": version})
    return out


def _manifest_version(bundle: Path) -> str:
    return str(json.loads((bundle / "manifest.json").read_text())["version"])


def _redis_namespaces(url: str) -> set[str]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return {k.decode().split(":")[1] for k in client.scan_iter("ccrl:*")}
    finally:
        client.close()


def test_reload_under_load_with_two_workers_loses_no_request(
    serve_process: Any,
    load_loop: Any,
    service_bundle: Path,
    sim_bundle: Path,
    test_videos: list[Video],
    make_payload: Any,
    redis_url: str,
    tmp_path: Path,
    api_token: str,
) -> None:
    from service.api.app import bundle_namespace
    from service.bundle import load_bundle

    srv = serve_process(service_bundle, workers=2, REDIS_URL=redis_url, CCRL_SHUTDOWN_DRAIN_S="1")
    auth = {"Authorization": f"Bearer {api_token}"}
    sim_bundle = _reversioned(sim_bundle, tmp_path, "next-release")  # versions always differ
    v_old, v_new = _manifest_version(service_bundle), _manifest_version(sim_bundle)
    assert v_old != v_new
    with load_loop(srv.url, _bodies(test_videos, make_payload), max_requests=400) as load:
        load.wait_for(10)
        r = httpx.post(
            f"{srv.url}/admin/reload", json={"bundle": str(sim_bundle)}, headers=auth, timeout=180
        )
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["status"] == "reloaded" and out["model_version"] == v_new
        assert out["previous_version"] == v_old and len(out["workers"]) == 2, srv.log()[-4000:]
        assert {w["model_version"] for w in out["workers"]} == {v_new}
        assert _versions(srv.url) == {v_new}  # every worker serves it once the answer came
        seen = len(load.records)
        load.wait_for(seen + 10)
        srv.send(signal.SIGHUP)  # to the master: back to the configured bundle, in place
        _wait_versions(srv.url, v_old)
        bad = httpx.post(
            f"{srv.url}/admin/reload",
            json={"bundle": str(_tampered(sim_bundle, tmp_path))},
            headers=auth,
            timeout=180,
        )
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"] == "reload_refused" and "sha256 mismatch" in bad.json()["detail"]
        assert _versions(srv.url) == {v_old}  # the old bundle keeps serving
        seen = len(load.records)
        load.wait_for(seen + 10)
    assert load.failures() == [], load.failures()[:5]
    assert set(load.outcomes()) == {"ok"}
    answered = {detail.split()[0] for _, outcome, detail in load.records if outcome == "ok"}
    assert answered == {v_old, v_new}
    # With Redis, the bank and index keys follow the bundle version (its namespace).
    namespaces = _redis_namespaces(redis_url)
    for bundle in (service_bundle, sim_bundle):
        assert bundle_namespace(load_bundle(bundle)) in namespaces
    metrics = httpx.get(f"{srv.url}/metrics", timeout=10).text
    assert f'ccrl_model_info{{name="tiny",version="{v_old}"}} 1.0' in metrics
    assert 'ccrl_reloads_total{result="refused"} 1.0' in metrics
    assert "reload refused" in srv.log() and "sha256 mismatch" in srv.log()
    _promtool_check_metrics(metrics)
    assert srv.stop() == 0


def _promtool_check_metrics(text: str) -> None:
    """``promtool check metrics`` finds nothing to say about the exposition (when installed)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def _trickle(url: str, body: bytes, seconds: float, out: dict[str, Any], token: str) -> None:
    """POST ``body`` in 10 pieces over ``seconds``: a request in flight for that long.
    ``out["sending"]`` is set once the first piece is on its way (the request is in flight)."""
    sending: threading.Event = out["sending"]

    def pieces() -> Iterator[bytes]:
        step = -(-len(body) // 10)
        for i in range(0, len(body), step):
            yield body[i : i + step]
            sending.set()
            time.sleep(seconds / 10)

    try:
        with httpx.Client(timeout=60) as client:
            r = client.post(
                f"{url}/localize",
                content=pieces(),
                headers={
                    "content-length": str(len(body)),
                    "content-type": "application/json",
                    "authorization": f"Bearer {token}",
                },
            )
        out["status"], out["connection"] = r.status_code, r.headers.get("connection", "")
    except httpx.HTTPError as e:
        out["error"] = repr(e)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_resets_no_connection_and_loses_no_request(
    serve_process: Any,
    load_loop: Any,
    service_bundle: Path,
    test_videos: list[Video],
    make_payload: Any,
    workers: int,
    api_token: str,
) -> None:
    srv = serve_process(
        service_bundle, workers=workers, CCRL_SHUTDOWN_DRAIN_S="1.5", CCRL_SHUTDOWN_GRACE_S="20"
    )
    bodies = _bodies(test_videos, make_payload)
    inflight: dict[str, Any] = {"sending": threading.Event()}
    with load_loop(srv.url, bodies, clients=3, max_requests=400, max_s=90) as load:
        load.wait_for(12)
        slow = threading.Thread(
            target=_trickle, args=(srv.url, bodies[0], 2.0, inflight, api_token)
        )
        slow.start()
        assert inflight["sending"].wait(timeout=30)
        time.sleep(0.3)  # the slow request is in flight (part of its body sent)
        signalled = time.monotonic()
        srv.send(signal.SIGTERM)
        slow.join(timeout=60)
        status = srv.wait(timeout=60)
        time.sleep(0.3)  # the clients now meet a closed port
    assert status == 0, srv.log()
    assert inflight.get("status") == 200, inflight
    assert inflight["connection"].lower() == "close"
    assert load.failures() == [], load.failures()[:5]
    before, after = load.outcomes(until=signalled), load.outcomes(since=signalled)
    assert set(before) == {"ok"} and before["ok"] >= 12
    assert set(after) <= {"ok", "refused"} and after.get("refused", 0) >= 1
    # Keep-alive clients were told (Connection: close, only sent while draining) before the port
    # closed: the requests in flight at the signal were answered so.
    assert any(o == "ok" and d.endswith(" close") for _, o, d in load.records)
    assert "draining" in srv.log()


def test_workers_exit_when_the_master_is_killed(service_bundle: Path, serve_process: Any) -> None:
    import os

    srv = serve_process(service_bundle, workers=2, CCRL_SHUTDOWN_DRAIN_S="0.5")
    workers = srv.worker_pids()
    assert len(workers) == 2, workers
    srv.kill()  # SIGKILL: the master cannot stop them itself
    deadline = time.monotonic() + 30
    while alive := [pid for pid in workers if os.path.exists(f"/proc/{pid}/stat")]:
        assert time.monotonic() < deadline, f"workers {alive} outlived the master"
        time.sleep(0.1)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{srv.url}/v2/health/live", timeout=2)
