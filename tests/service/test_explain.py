"""Evidence for a score: TreeSHAP contributions of the returned rows that sum with the bias to the
booster's margin, and the nearest labelled segments of the class from other videos; on request
only (``"explain": true``), and offline in ``ccrl explain`` with the runtime alone."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.yt8m import Video


@pytest.fixture(scope="module")
def scorer(sim_bundle: Path) -> Any:
    from service.bundle import load_bundle
    from service.scorer import Scorer

    return Scorer(load_bundle(sim_bundle), providers="cpu")


@pytest.fixture
def sim_client(sim_bundle: Path, api_token: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.config import Settings

    settings = Settings(
        bundle=sim_bundle, api_token=api_token, redis_url=None, ort_intra_threads=1, xgb_nthread=1
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _rated_class(video: Video) -> int:
    return int(video.segment_labels[0])


def test_contributions_and_bias_sum_to_the_margin_of_the_score(
    scorer: Any, test_videos: list[Video]
) -> None:
    import xgboost as xgb

    from service.explain import explain_localization
    from service.features import FEATURE_NAMES

    v = test_videos[0]
    bank = scorer.bundle.bank
    loc = scorer.localize(v.features(), bank, video_id=v.id, max_classes=3, max_segments=4)
    names = scorer.bundle.feature_names
    every = explain_localization(scorer.booster, names, loc, bank, v.id, top=len(FEATURE_NAMES))
    top5 = explain_localization(scorer.booster, names, loc, bank, v.id, top=5)
    rows = np.concatenate([k * loc.num_segments + c.starts // 5 for k, c in enumerate(loc.classes)])
    dm = xgb.DMatrix(
        loc.pairs.x[rows],
        feature_names=scorer.booster.feature_names,
        feature_types=scorer.booster.feature_types,
        enable_categorical=True,
    )
    margins = scorer.booster.predict(dm, output_margin=True)
    flat_all = [e for per_class in every for e in per_class]
    flat_top = [e for per_class in top5 for e in per_class]
    scores = np.concatenate([c.scores for c in loc.classes])
    assert len(flat_all) == len(rows) == len(flat_top) > 3
    for e, e5, m, s in zip(flat_all, flat_top, margins, scores, strict=True):
        assert len(e.contributions) == len(FEATURE_NAMES) and abs(e.rest) < 1e-6
        assert e.bias + sum(c.contribution for c in e.contributions) == pytest.approx(m, abs=1e-4)
        assert e.margin == pytest.approx(m, abs=1e-4)
        # five listed, the rest summed: still the margin; and the score is sigmoid(margin)
        assert len(e5.contributions) == 5
        listed = sum(c.contribution for c in e5.contributions)
        assert e5.bias + listed + e5.rest == pytest.approx(m, abs=1e-4)
        assert 1 / (1 + np.exp(-e.margin)) == pytest.approx(float(s), abs=1e-5)
        sizes = [abs(c.contribution) for c in e5.contributions]
        assert sizes == sorted(sizes, reverse=True)
        assert {c.feature for c in e5.contributions} <= set(names)


def test_neighbours_are_the_nearest_labelled_of_the_class_from_other_videos(
    scorer: Any, test_videos: list[Video]
) -> None:
    from service.bank import unit_rows
    from service.explain import nearest_labelled

    v = test_videos[0]
    c = _rated_class(v)
    emb = scorer.embed(v.features())
    # the bundle's bank plus labels of this very video: those must never be a neighbour
    bank = scorer.bundle.bank.add(
        emb[:2], np.full(2, c), np.array([1, 0]), [v.id, v.id], np.array([0, 5])
    )
    found = nearest_labelled(bank, c, emb, v.id, k=3)
    mine = np.flatnonzero((bank.emb_class == c) & (bank.emb_video != v.id))
    assert len(found) == emb.shape[0] and mine.size
    sims = unit_rows(emb) @ bank.emb[mine].T
    for i, (pos, neg) in enumerate(found):
        for label, near in ((1, pos), (0, neg)):
            cols = np.flatnonzero(bank.emb_label[mine] == label)
            want = np.sort(sims[i, cols])[::-1][:3]
            assert [n.cosine for n in near] == pytest.approx(want.tolist(), abs=1e-5)
            assert all(n.label == label and n.video_id != v.id for n in near)
            for n in near:
                j = mine[(bank.emb_video[mine] == n.video_id) & (bank.emb_start[mine] == n.start)]
                assert j.size and int(bank.emb_class[j[0]]) == c


def test_explain_is_on_request_and_documented(
    sim_client: Any, test_videos: list[Video], make_payload: Any
) -> None:
    from tests.service.test_api import _check_against_openapi

    v = test_videos[1]
    plain = sim_client.post("/localize", json=make_payload(v, max_segments=3))
    asked = sim_client.post("/localize", json=make_payload(v, max_segments=3, explain=True))
    assert plain.status_code == asked.status_code == 200
    assert "evidence" not in plain.text and "explain" not in plain.headers["server-timing"]
    assert "explain;dur=" in asked.headers["server-timing"]
    for a, b in zip(plain.json()["classes"], asked.json()["classes"], strict=True):
        assert [s["score"] for s in a["segments"]] == [s["score"] for s in b["segments"]]
        for seg in b["segments"]:
            ev = seg["evidence"]
            total = ev["bias"] + ev["rest"] + sum(c["contribution"] for c in ev["contributions"])
            assert total == pytest.approx(ev["margin"], abs=1e-4)
            assert 1 / (1 + np.exp(-ev["margin"])) == pytest.approx(seg["score"], abs=1e-5)
            near = ev["neighbours"]
            assert len(near["positive"]) <= 3 and len(near["negative"]) <= 3
            assert all(n["label"] == 1 for n in near["positive"])
    _check_against_openapi(sim_client, "post", "/localize", asked)
    bad = sim_client.post("/localize", json=make_payload(v, explain="yes"))
    assert bad.status_code == 422


@pytest.mark.slow
def test_ccrl_explain_runs_with_the_runtime_alone(
    sim_bundle: Path, service_corpus: Path, test_videos: list[Video], serving_image_env: Any
) -> None:
    env = serving_image_env()
    v = test_videos[0]
    c = _rated_class(v)
    args = [sys.executable, "-m", "ccrl", "explain", str(sim_bundle)]
    args += ["--data", str(service_corpus / "test"), "--video", v.id, "--class", str(c)]
    proc = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["video_id"] == v.id and out["class_id"] == c and len(out["segments"]) == 5
    for seg in out["segments"]:
        ev = seg["evidence"]
        total = ev["bias"] + ev["rest"] + sum(x["contribution"] for x in ev["contributions"])
        assert total == pytest.approx(ev["margin"], abs=1e-4)
    text = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and f"video {v.id}, class {c}" in text.stdout
    assert "nearest labelled positives" in text.stdout
    missing = subprocess.run(
        [*args[:-4], "--video", "no-such-video", "--class", str(c)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1 and "'no-such-video' is not in" in missing.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "ccrl", "--help"], env=env, capture_output=True, text=True
    )
    assert "explain" in helped.stdout and "Why a video's segments score" in helped.stdout
