"""The service on Redis through a real HTTP server: replicas share the bank and the index; with
Redis down scoring goes on from the local bank, /readyz says degraded, writes and index reads are
503, and the service recovers by itself when Redis is back."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from service.decode import encode_frames
from service.yt8m import Video


def _settings(make_settings: Any, url: str) -> Any:
    return make_settings(redis_url=url, bank_poll_interval_s=0, store_retry_interval_s=0.2)


def _labels(v: Video, segments: list[dict[str, int]]) -> dict[str, Any]:
    return {
        "video_id": v.id,
        "rgb": encode_frames(v.rgb),
        "audio": encode_frames(v.audio),
        "segments": segments,
    }


@pytest.mark.slow
@pytest.mark.redis
def test_redis_down_degrades_then_recovers(
    make_settings: Any,
    redis_server: Any,
    serve_app: Any,
    test_videos: list[Video],
    make_payload: Any,
    api_token: str,
) -> None:
    from service.api.app import create_app

    auth = {"Authorization": f"Bearer {api_token}"}
    v, w = test_videos[0], test_videos[1]
    with serve_app(create_app(_settings(make_settings, redis_server.url))) as srv:
        h = httpx.Client(base_url=srv.url, timeout=30)
        assert h.get("/readyz").json()["status"] == "ready"
        first = h.post("/localize", json=make_payload(v, video_id=v.id), headers=auth)
        assert first.status_code == 200 and first.json()["indexed"] is True
        c = first.json()["classes"][0]["class_id"]
        assert h.get(f"/classes/{c}/top-segments").json()["total"] > 0
        r = h.post(
            f"/classes/{c}/labels", json=_labels(v, [{"start": 0, "label": 1}]), headers=auth
        )
        assert r.status_code == 201

        redis_server.stop()
        down = h.post("/localize", json=make_payload(w, video_id=w.id), headers=auth)
        assert down.status_code == 200  # scoring goes on from the local bank
        assert down.json()["indexed"] is False and "not indexed" in down.json()["warnings"][0]
        ready = h.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded" and ready.json()["degraded"] is True
        r = h.post(
            f"/classes/{c}/labels", json=_labels(w, [{"start": 0, "label": 1}]), headers=auth
        )
        assert r.status_code == 503 and "bank store is unavailable" in r.json()["detail"]
        r = h.get(f"/classes/{c}/top-segments")
        assert r.status_code == 503 and "index store is unavailable" in r.json()["detail"]
        metrics = h.get("/metrics").text
        assert "ccrl_degraded 1.0" in metrics
        assert 'ccrl_store_errors_total{op="put",store="index"}' in metrics
        # classes still answer from the local bank, which kept the label written before
        classes = h.get("/classes").json()["classes"]
        assert classes[c]["bank"]["positive"] >= 1

        redis_server.start()  # an empty Redis again: the service recovers by itself
        deadline = time.monotonic() + 10
        while h.get("/readyz").json()["status"] != "ready":
            assert time.monotonic() < deadline, "did not recover"
            time.sleep(0.1)
        again = h.post("/localize", json=make_payload(w, video_id=w.id), headers=auth)
        assert again.status_code == 200 and again.json()["indexed"] is True
        r = h.post(
            f"/classes/{c}/labels", json=_labels(w, [{"start": 0, "label": 1}]), headers=auth
        )
        assert r.status_code == 201
        assert r.json()["bank"]["positive"] == classes[c]["bank"]["positive"] + 1  # re-seeded
        assert "ccrl_degraded 0.0" in h.get("/metrics").text


@pytest.mark.redis
def test_two_replicas_share_the_bank_and_the_index(
    make_settings: Any,
    redis_server: Any,
    test_videos: list[Video],
    make_payload: Any,
    api_token: str,
) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    auth = {"Authorization": f"Bearer {api_token}"}
    v, other = test_videos[2], test_videos[3]
    settings = _settings(make_settings, redis_server.url)
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        c = b.post("/localize", json=make_payload(other)).json()["classes"][0]["class_id"]
        before = b.post("/localize", json=make_payload(other, classes=[c])).json()
        bank_before = b.get("/classes").json()["classes"][c]["bank"]
        segs = [{"start": 0, "label": 1}, {"start": 5, "label": 1}, {"start": 10, "label": 0}]
        r = a.post(f"/classes/{c}/labels", json=_labels(v, segs), headers=auth)
        assert r.status_code == 201 and r.json()["bank_version"] == 1
        # replica b's background thread applies the write within milliseconds: counts and scores
        deadline = time.monotonic() + 10
        while b.get("/readyz").json()["bank_version"] < 1:
            assert time.monotonic() < deadline, "replica b never saw the write"
            time.sleep(0.01)
        assert b.get("/classes").json()["classes"][c]["bank"] == {
            "positive": bank_before["positive"] + 2,
            "negative": bank_before["negative"] + 1,
        }
        after = b.post("/localize", json=make_payload(other, classes=[c])).json()
        assert after["classes"] != before["classes"]
        assert b.get("/readyz").json()["bank_version"] == 1
        # the index written through one replica is read through the other
        a.post("/localize", json=make_payload(other, video_id=other.id, classes=[c]), headers=auth)
        top = b.get(f"/classes/{c}/top-segments", params={"limit": 3}).json()
        assert top["total"] == other.num_frames // 5
        assert {s["video_id"] for s in top["segments"]} == {other.id}
        best = after["classes"][0]["segments"][0]  # same best score (ties may order apart)
        assert top["segments"][0]["score"] == pytest.approx(best["score"])
        # a removal through replica b: a sees it, and b answers 404 for what is gone
        body = {"video_id": v.id, "starts": [0, 10]}
        r = b.request("DELETE", f"/classes/{c}/labels", json=body, headers=auth)
        assert r.status_code == 200, r.text
        assert [(s["start"], s["label"]) for s in r.json()["removed"]] == [(0, 1), (10, 0)]
        assert r.json()["bank"] == {
            "positive": bank_before["positive"] + 1,
            "negative": bank_before["negative"],
        }
        deadline = time.monotonic() + 10
        while a.get("/readyz").json()["bank_version"] < r.json()["bank_version"]:
            assert time.monotonic() < deadline, "replica a never saw the removal"
            time.sleep(0.01)
        assert a.get("/classes").json()["classes"][c]["bank"] == r.json()["bank"]
        again = a.request("DELETE", f"/classes/{c}/labels", json=body, headers=auth)
        assert again.status_code == 404 and "nothing was removed" in again.json()["detail"]
