"""Hot reload, the Open Inference Protocol endpoints and the Redis epoch, on real apps in-process.

The multi-worker and signal cases run against real ``ccrl serve`` processes in test_ops_serve.py.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.yt8m import Video


def _version(bundle: Path) -> str:
    return str(json.loads((bundle / "manifest.json").read_text())["version"])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------- reload
def test_reload_swaps_the_bundle_and_refuses_a_tampered_one_with_its_reason(
    client: Any, sim_bundle: Path, service_bundle: Path, api_token: str, tmp_path: Path, caplog: Any
) -> None:
    old, new = _version(service_bundle), _version(sim_bundle)
    assert client.post("/admin/reload").status_code == 401
    r = client.post("/admin/reload", json={"bundle": str(sim_bundle)}, headers=_auth(api_token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["model_version"], body["previous_version"]) == (
        "reloaded",
        new,
        old,
    )
    assert body["bundle"] == str(sim_bundle.resolve()) and body["workers"] == []
    assert client.get("/readyz").json()["model_version"] == new
    bad = tmp_path / "bad"
    shutil.copytree(sim_bundle, bad)
    (bad / "bank.npz").write_bytes(b"not the bank")
    with caplog.at_level(logging.ERROR, logger="ccrl.reload"):
        r = client.post("/admin/reload", json={"bundle": str(bad)}, headers=_auth(api_token))
    assert r.status_code == 422 and r.json()["error"] == "reload_refused"
    assert "sha256 mismatch" in r.json()["detail"] and "bank.npz" in r.json()["detail"]
    assert any("sha256 mismatch" in rec.getMessage() for rec in caplog.records)
    assert client.get("/readyz").json()["model_version"] == new  # still the good one
    r = client.post("/admin/reload", headers=_auth(api_token))  # no body: the configured one
    assert r.status_code == 200 and r.json()["model_version"] == old
    text = client.get("/metrics").text
    assert 'ccrl_reloads_total{result="ok"} 2.0' in text
    assert 'ccrl_reloads_total{result="refused"} 1.0' in text
    assert f'ccrl_model_info{{name="sim",version="{new}"}} 0.0' in text
    assert f'ccrl_model_info{{name="tiny",version="{old}"}} 1.0' in text


def test_reload_body_errors_are_4xx(client: Any, api_token: str) -> None:
    h = _auth(api_token)
    assert client.post("/admin/reload", content=b"{}", headers=h).status_code == 415
    json_h = {**h, "content-type": "application/json"}
    assert client.post("/admin/reload", content=b"{", headers=json_h).status_code == 400
    r = client.post("/admin/reload", json={"bundle": 3}, headers=h)
    assert r.status_code == 422
    r = client.post("/admin/reload", json={"bundle": "/no/such/bundle"}, headers=h)
    assert r.status_code == 422 and "bundle folder not found" in r.json()["detail"]


@pytest.fixture
def served(make_settings: Any, serve_app: Any) -> Iterator[Any]:
    """The app (embedded store) on a real HTTP port."""
    from service.api.app import create_app

    with serve_app(create_app(make_settings())) as srv:
        yield srv


def test_a_request_in_flight_finishes_on_the_old_bundle(
    served: Any,
    sim_bundle: Path,
    service_bundle: Path,
    test_videos: list[Video],
    make_payload: Any,
    api_token: str,
) -> None:
    body = json.dumps(make_payload(test_videos[0])).encode()
    started = threading.Event()
    out: dict[str, Any] = {}

    def pieces() -> Iterator[bytes]:
        half = len(body) // 2
        yield body[:half]
        started.set()
        time.sleep(1.0)  # the reload happens now, while this request holds the old runtime
        yield body[half:]

    def slow() -> None:
        with httpx.Client(timeout=60) as c:
            out["r"] = c.post(
                f"{served.url}/localize",
                content=pieces(),
                headers={"content-type": "application/json"},
            )

    t = threading.Thread(target=slow)
    t.start()
    assert started.wait(30)
    r = httpx.post(
        f"{served.url}/admin/reload",
        json={"bundle": str(sim_bundle)},
        headers=_auth(api_token),
        timeout=60,
    )
    assert r.status_code == 200
    t.join(60)
    assert out["r"].status_code == 200 and out["r"].json()["model_version"] == _version(
        service_bundle
    )
    after = httpx.post(
        f"{served.url}/localize",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert after.json()["model_version"] == _version(sim_bundle)


def test_the_old_runtime_is_closed_after_its_last_request(
    make_settings: Any, sim_bundle: Path
) -> None:
    from types import SimpleNamespace

    from service.api.app import build_runtime
    from service.api.reload import Reloads

    state = SimpleNamespace(runtime=None)
    reloads = Reloads(state, make_settings(), build_runtime)
    old = reloads.start()
    closed: list[str] = []
    old.index.close = lambda: closed.append("index")  # type: ignore[method-assign]
    old.leases = 1  # one request still running on it
    done = reloads.reload(str(sim_bundle))
    assert state.runtime is not old and done.model == "sim"
    time.sleep(0.3)
    assert closed == []  # not while the request runs
    old.leases = 0
    deadline = time.monotonic() + 10
    while not closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed == ["index"]
    reloads.shutdown()
    assert state.runtime is None


# ---------------------------------------------------------------------------- OIP
def test_open_inference_protocol_health_and_metadata(
    client: Any, sim_bundle: Path, service_bundle: Path, api_token: str
) -> None:
    old = _version(service_bundle)
    assert client.get("/v2/health/live").status_code == 200
    r = client.get("/v2/health/ready")
    assert r.status_code == 200 and r.content == b""  # the protocol: status only
    meta = client.get("/v2/models/tiny").json()
    assert meta["name"] == "tiny" and meta["versions"] == [old]
    assert {i["name"]: i["shape"] for i in meta["inputs"]} == {
        "rgb": [-1, 1024],
        "audio": [-1, 128],
    }
    assert client.get(f"/v2/models/tiny/versions/{old}").json() == meta
    assert client.get("/v2/models/tiny/ready").status_code == 200
    assert client.get(f"/v2/models/tiny/versions/{old}/ready").status_code == 200
    assert client.get("/v2/models/tiny/versions/nope/ready").status_code == 404
    unknown = client.get("/v2/models/other/ready")
    assert unknown.status_code == 404 and "unknown model 'other'" in unknown.json()["error"]
    assert client.get("/v2").json()["name"] == "ccrl"
    client.post("/admin/reload", json={"bundle": str(sim_bundle)}, headers=_auth(api_token))
    new = _version(sim_bundle)
    assert client.get(f"/v2/models/sim/versions/{new}/ready").status_code == 200
    assert client.get("/v2/models/tiny/ready").status_code == 404  # the old model is gone
    assert client.get("/healthz").status_code == 200  # the service's own endpoints stay


def test_oip_readiness_is_strict(make_settings: Any) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import build_runtime, create_app

    c = TestClient(create_app(make_settings()))  # no `with`: nothing is loaded
    assert c.get("/v2/health/live").status_code == 200
    r = c.get("/v2/health/ready")
    assert r.status_code == 400 and "not loaded" in r.json()["error"]
    assert c.get("/v2/models/tiny/ready").status_code == 400
    rt = build_runtime(make_settings())
    assert set(rt.checks) == {"candidate", "bank", "booster"}
    rt.checks.pop("booster")  # a runtime whose booster did not pass the self-check
    with TestClient(create_app(runtime=rt)) as c:
        r = c.get("/v2/health/ready")
        assert r.status_code == 400 and "booster" in r.json()["error"]
        assert c.get("/v2/models/tiny/ready").status_code == 400
    rt.close()


def test_the_self_check_refuses_a_bank_of_the_wrong_width(service_bundle: Path) -> None:
    from service.bank import ClassBank
    from service.bundle import load_bundle
    from service.scorer import Scorer
    from service.selfcheck import SelfCheckError, self_check

    bundle = load_bundle(service_bundle)
    scorer = Scorer(bundle)
    assert set(self_check(scorer, bundle.bank)) == {"candidate", "bank", "booster"}
    wrong = ClassBank.empty(bundle.bank.num_classes, bundle.bank.dim + 3)
    with pytest.raises(SelfCheckError, match=r"bank: .* dims"):
        self_check(scorer, wrong)


# ---------------------------------------------------------------------------- Redis epoch
@pytest.mark.redis
def test_a_redis_that_came_back_empty_marks_the_index_partial(
    make_settings: Any,
    redis_server: Any,
    test_videos: list[Video],
    make_payload: Any,
    api_token: str,
) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.api.metrics import Metrics
    from service.stores.redis import RedisBackend, RedisIndexStore

    settings = make_settings(redis_url=redis_server.url)
    with TestClient(create_app(settings)) as c:
        v = test_videos[0]
        r = c.post("/localize", json=make_payload(v, video_id=v.id), headers=_auth(api_token))
        assert r.json()["indexed"], r.text
        ready = c.get("/readyz").json()
        assert (ready["status"], ready["index"]) == ("ready", "complete")
        redis_server.stop()  # no persistence: it comes back empty
        redis_server.start()
        time.sleep(1.1)  # the epoch is checked at most once a second
        ready = c.get("/readyz").json()
        assert (ready["status"], ready["index"]) == ("degraded", "partial"), ready
        assert "ccrl index" in ready["index_detail"] and not ready["degraded"]
        text = c.get("/metrics").text
        assert "ccrl_index_partial 1.0" in text and "ccrl_redis_resets_total 1.0" in text
        rt = c.app.state.runtime
        namespace = rt.index.backend.base.split(":", 1)[1]
    # A replica that starts after the loss knows it too (the mark is in Redis) ...
    metrics = Metrics()
    late = RedisIndexStore(RedisBackend(redis_server.url, namespace=namespace, listener=metrics))
    assert late.state().state == "partial"
    assert metrics.index_partial._value.get() == 1.0
    # ... until a complete rebuild (ccrl index) clears it.
    late.epoch.mark_rebuilt()
    assert late.state().state == "complete" and metrics.index_partial._value.get() == 0.0
    late.close()


@pytest.mark.redis
def test_a_first_start_on_an_empty_redis_is_not_a_loss(redis_url: str) -> None:
    from service.stores.redis import RedisBackend, RedisIndexStore

    a = RedisIndexStore(RedisBackend(redis_url, namespace="ns"))
    b = RedisIndexStore(RedisBackend(redis_url, namespace="ns"))
    assert a.state().state == "complete" and b.state().state == "complete"
    assert a.epoch._known == b.epoch._known  # one epoch, created once
    a.close()
    b.close()


def test_the_write_api_says_a_503_is_an_unknown_outcome_and_a_retry_is_safe(client: Any) -> None:
    doc = client.get("/openapi.json").json()["paths"]["/classes/{class_id}/labels"]["post"]
    assert "outcome is unknown" in doc["description"] and "relabel" in doc["description"]
    assert "503" in doc["responses"]
