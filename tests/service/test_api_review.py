"""The review queue and labels by reference through the API: the queue never lists a segment
labelled for the class and follows its strategy; a label without frames uses the kept embedding
(409 when it is not kept), re-scores the class's kept segments at once (the same scores a fresh
request gives) and changes the next request's scores; replicas on Redis share all of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.yt8m import Video


@pytest.fixture
def sim_settings(sim_bundle: Path, api_token: str) -> Any:
    from service.config import Settings

    def make(**kw: Any) -> Settings:
        base: dict[str, Any] = {
            "bundle": sim_bundle,
            "api_token": api_token,
            "redis_url": None,
            "ort_intra_threads": 1,
            "xgb_nthread": 1,
        }
        return Settings(**{**base, **kw})

    return make


@pytest.fixture
def indexed(
    sim_settings: Any, test_videos: list[Video], make_payload: Any, api_token: str
) -> Iterator[Any]:
    """A client on the sim bundle with every test video localized and indexed."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    with TestClient(create_app(sim_settings())) as c:
        for v in test_videos:
            r = c.post("/localize", json=make_payload(v, video_id=v.id), headers=_auth(api_token))
            assert r.status_code == 200, r.text
        yield c


def _busiest_class(client: Any, test_videos: list[Video]) -> int:
    """The rated class with the most indexed segments."""
    rated = sorted({int(c) for v in test_videos for c in v.segment_labels})
    return max(
        rated, key=lambda c: client.get(f"/classes/{c}/top-segments?limit=1").json()["total"]
    )


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _by_reference(video_id: str, marks: list[tuple[int, int]]) -> dict[str, Any]:
    return {"video_id": video_id, "segments": [{"start": s, "label": y} for s, y in marks]}


def _member(seg: dict[str, Any]) -> str:
    return f"{seg['video_id']}:{seg['start']}"


def _logit(p: float) -> float:
    q = min(max(p, 1e-7), 1 - 1e-7)
    return float(np.log(q / (1 - q)))


@pytest.mark.slow
def test_the_queue_follows_its_strategy_and_never_lists_a_labelled_segment(
    indexed: Any, test_videos: list[Video], api_token: str
) -> None:
    from tests.service.test_api import _check_against_openapi

    c = _busiest_class(indexed, test_videos)
    r = indexed.get(f"/classes/{c}/review?limit=8&explain=true")
    assert r.status_code == 200
    _check_against_openapi(indexed, "get", "/classes/{class_id}/review", r)
    queue = r.json()["segments"]
    assert len(queue) == 8 and r.json()["strategy"] == "uncertain"
    margins = [abs(s["margin"]) for s in queue]
    assert margins == sorted(margins)  # nearest the boundary (margin 0) first
    for s in queue:
        assert s["kept"] and s["margin"] == pytest.approx(_logit(s["score"]), abs=1e-3)
        assert s["evidence"]["margin"] == pytest.approx(s["margin"], abs=1e-3)
    top = indexed.get(f"/classes/{c}/review?limit=8&strategy=top_unlabelled").json()["segments"]
    scores = [s["score"] for s in top]
    assert scores == sorted(scores, reverse=True) and all(s["evidence"] is None for s in top)
    best = indexed.get(f"/classes/{c}/top-segments?limit=8").json()["segments"]
    assert [_member(s) for s in top] == [_member(s) for s in best]  # nothing labelled yet
    # label three queue segments and the best one, by reference
    chosen = [queue[0], queue[1], queue[2], top[0]]
    for i, seg in enumerate(chosen):
        body = _by_reference(seg["video_id"], [(seg["start"], i % 2)])
        w = indexed.post(f"/classes/{c}/labels", json=body, headers=_auth(api_token))
        assert w.status_code == 201, w.text
        assert w.json()["added"] == 1 and w.json()["rescored"] > 0
    labelled = {_member(s) for s in chosen}
    for strategy in ("uncertain", "top_unlabelled"):
        q = indexed.get(f"/classes/{c}/review?limit=1000&strategy={strategy}").json()
        assert q["segments"] and not labelled & {_member(s) for s in q["segments"]}
    assert q["bank"]["positive"] >= 2 and q["bank"]["negative"] >= 2


@pytest.mark.slow
def test_a_label_by_reference_rescores_at_once_and_changes_the_next_request(
    indexed: Any, test_videos: list[Video], make_payload: Any, api_token: str
) -> None:
    c = _busiest_class(indexed, test_videos)
    videos = {v.id: v for v in test_videos}

    def fresh(video_id: str) -> dict[int, float]:
        body = make_payload(videos[video_id], video_id=video_id, classes=[c], index=False)
        body["max_segments"] = 1000
        seg = indexed.post("/localize", json=body).json()["classes"][0]["segments"]
        return {s["start"]: s["score"] for s in seg}

    queue = indexed.get(f"/classes/{c}/review?limit=3").json()["segments"]
    target = queue[0]
    others = [v for v in test_videos if v.id != target["video_id"]]
    before = {v.id: fresh(v.id) for v in others}
    body = _by_reference(target["video_id"], [(target["start"], 1)])
    w = indexed.post(f"/classes/{c}/labels", json=body, headers=_auth(api_token))
    assert w.status_code == 201 and w.json()["rescored"] > 0
    after = {v.id: fresh(v.id) for v in others}
    moved = sum(before[v][s] != after[v][s] for v in before for s in before[v])
    assert moved > 0  # the next request's scores use the new label
    # the kept segments were re-scored to exactly what a fresh request gives, in the index too
    top = indexed.get(f"/classes/{c}/top-segments?limit=30").json()["segments"]
    kept = indexed.get(f"/classes/{c}/review?limit=30&strategy=top_unlabelled").json()
    checked = 0
    for s in kept["segments"]:
        if s["kept"] and s["video_id"] in after:
            assert s["score"] == pytest.approx(after[s["video_id"]][s["start"]], abs=1e-6)
            checked += 1
    assert checked >= 5
    for s in top:
        if s["video_id"] in after:
            assert s["score"] == pytest.approx(after[s["video_id"]][s["start"]], abs=1e-6)
    # removing the label re-scores them back: the kept scores are a fresh request's again
    gone = {"video_id": target["video_id"], "starts": [target["start"]]}
    r = indexed.request("DELETE", f"/classes/{c}/labels", json=gone, headers=_auth(api_token))
    assert r.status_code == 200 and r.json()["rescored"] > 0
    again = indexed.get(f"/classes/{c}/review?limit=30&strategy=top_unlabelled").json()
    for s in again["segments"]:
        if s["kept"] and s["video_id"] in before:
            assert s["score"] == pytest.approx(before[s["video_id"]][s["start"]], abs=1e-6)
    body = _by_reference(target["video_id"], [(target["start"], 1)])
    assert (
        indexed.post(f"/classes/{c}/labels", json=body, headers=_auth(api_token)).status_code == 201
    )
    # the labelled embedding is the one the frames give
    rt = indexed.app.state.runtime
    bank = rt.bank.snapshot()
    j = np.flatnonzero((bank.emb_video == target["video_id"]) & (bank.emb_class == c))
    j = j[bank.emb_start[j] == target["start"]]
    emb = rt.scorer.embed(videos[target["video_id"]].features())[target["start"] // 5]
    np.testing.assert_allclose(bank.emb[j[0]], emb / np.linalg.norm(emb), atol=1e-6)


@pytest.mark.slow
def test_labels_by_reference_refuse_what_is_not_kept_or_malformed(
    indexed: Any, test_videos: list[Video], make_payload: Any, api_token: str
) -> None:
    c = _busiest_class(indexed, test_videos)
    url = f"/classes/{c}/labels"
    r = indexed.post(url, json=_by_reference("never-indexed", [(0, 1)]), headers=_auth(api_token))
    assert r.status_code == 409 and r.json()["error"] == "embedding_not_kept"
    assert (
        "not kept for class" in r.json()["detail"]
        and "send the video's frames" in r.json()["detail"]
    )
    seg = indexed.get(f"/classes/{c}/review?limit=1").json()["segments"][0]
    for marks in ([(seg["start"] + 3, 1)], [(seg["start"], 1), (seg["start"], 0)]):
        bad = indexed.post(
            url, json=_by_reference(seg["video_id"], marks), headers=_auth(api_token)
        )
        assert bad.status_code == 422, bad.text
    v = test_videos[0]
    half = {**_by_reference(v.id, [(0, 1)]), "rgb": make_payload(v)["rgb"]}
    r = indexed.post(url, json=half, headers=_auth(api_token))
    assert r.status_code == 422 and "audio" in r.json()["detail"]
    r = indexed.post(url, json=_by_reference(seg["video_id"], [(seg["start"], 1)]))
    assert r.status_code == 401
    assert indexed.get("/classes/99999/review").status_code == 404
    assert indexed.get(f"/classes/{c}/review?strategy=random").status_code == 422
    assert indexed.get(f"/classes/{c}/review?limit=100000").status_code == 422


@pytest.mark.slow
def test_with_no_review_store_nothing_is_kept_and_the_index_still_serves(
    sim_settings: Any, test_videos: list[Video], make_payload: Any, api_token: str
) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    with TestClient(create_app(sim_settings(review_keep_per_class=0))) as client:
        for v in test_videos[:6]:
            body = make_payload(v, video_id=v.id)
            assert client.post("/localize", json=body, headers=_auth(api_token)).status_code == 200
        c = _busiest_class(client, test_videos)
        assert client.get(f"/classes/{c}/review").json()["segments"] == []
        top = client.get(f"/classes/{c}/review?strategy=top_unlabelled").json()["segments"]
        assert top and not any(s["kept"] for s in top)
        body = _by_reference(top[0]["video_id"], [(top[0]["start"], 1)])
        r = client.post(f"/classes/{c}/labels", json=body, headers=_auth(api_token))
        assert r.status_code == 409


def test_the_review_page_is_served_from_the_service_alone(client: Any) -> None:
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = client.get(f"/ui/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert "http://" not in r.text and "https://" not in r.text  # no CDN, no other host
    assert "https://" not in page.text and '<script src="/ui/app.js"' in page.text
    assert client.get("/ui/../app.py").status_code == 404
    assert client.get("/ui/secrets.txt").status_code == 404


@pytest.mark.slow
@pytest.mark.redis
def test_replicas_on_redis_share_the_kept_segments_and_the_rescored_index(
    sim_settings: Any,
    redis_url: str,
    serve_app: Any,
    test_videos: list[Video],
    make_payload: Any,
    api_token: str,
) -> None:
    from service.api.app import create_app

    settings = sim_settings(redis_url=redis_url, bank_poll_interval_s=0)
    with serve_app(create_app(settings)) as a, serve_app(create_app(settings)) as b:
        with (
            httpx.Client(base_url=a.url, timeout=60) as ha,
            httpx.Client(base_url=b.url, timeout=60) as hb,
        ):
            for v in test_videos:
                body = make_payload(v, video_id=v.id)
                assert ha.post("/localize", json=body, headers=_auth(api_token)).status_code == 200
            c = _busiest_class(ha, test_videos)
            qa = ha.get(f"/classes/{c}/review?limit=5").json()["segments"]
            qb = hb.get(f"/classes/{c}/review?limit=5").json()["segments"]
            assert qa == qb and len(qa) == 5
            body = _by_reference(qb[0]["video_id"], [(qb[0]["start"], 1)])
            w = hb.post(f"/classes/{c}/labels", json=body, headers=_auth(api_token))
            assert w.status_code == 201 and w.json()["rescored"] > 0
            ta = ha.get(f"/classes/{c}/top-segments?limit=20").json()
            tb = hb.get(f"/classes/{c}/top-segments?limit=20").json()
            assert ta == tb
            after = ha.get(f"/classes/{c}/review?limit=50").json()["segments"]
            assert _member(qb[0]) not in {_member(s) for s in after}
