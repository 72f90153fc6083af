"""A bundle whose GBM has a ranking objective: its scores are margins (any real number); the
service returns and indexes them as they are, ordered best first, within each class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from service.bundle import load_bundle
from service.features import FEATURE_NAMES, FEATURE_TYPES, build_pair_features
from service.scorer import Scorer
from service.yt8m import Video


def test_margins_are_served_and_indexed_in_order(
    rank_bundle: Path, test_videos: list[Video], make_payload: Any, api_token: str
) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.config import Settings

    b = load_bundle(rank_bundle, nthread=1)
    assert b.manifest.config["ccrl_objective"] == "rank:pairwise"
    scorer = Scorer(b, intra_threads=1, xgb_nthread=1, providers="cpu")
    settings = Settings(bundle=rank_bundle, api_token=api_token, redis_url=None, xgb_nthread=1)
    served: list[float] = []
    auth = {"Authorization": f"Bearer {api_token}"}  # indexing (a video_id) needs the token
    with TestClient(create_app(settings)) as client:
        for v in test_videos[:4]:
            body = make_payload(v, video_id=v.id, max_classes=3)
            res = client.post("/localize", json=body, headers=auth).json()
            loc = scorer.localize(v.features(), b.bank, video_id=v.id, max_classes=3)
            assert [c["class_id"] for c in res["classes"]] == loc.class_ids.tolist()
            for k, c in enumerate(res["classes"]):
                got = [s["score"] for s in c["segments"]]
                assert got == sorted(got, reverse=True)
                # the margins of the booster itself (no sigmoid): predict(output_margin)
                pm = build_pair_features(
                    *_outputs(scorer, v), loc.class_ids[k : k + 1], b.bank, v.id, max_sim=b.max_sim
                )
                d = xgb.DMatrix(
                    pm.x,
                    feature_names=list(FEATURE_NAMES),
                    feature_types=list(FEATURE_TYPES),
                    enable_categorical=True,
                )
                margins = b.booster.predict(d, output_margin=True)
                np.testing.assert_allclose(
                    sorted(got, reverse=True), -np.sort(-margins)[: len(got)], rtol=1e-5, atol=1e-5
                )
                served += got
        assert min(served) < 0.0 or max(served) > 1.0  # margins, not probabilities
        c = res["classes"][0]["class_id"]
        top = client.get(f"/classes/{c}/top-segments", params={"limit": 50}).json()
        scores = [s["score"] for s in top["segments"]]
        assert scores == sorted(scores, reverse=True) and len(scores) > 0


def _outputs(scorer: Scorer, v: Video) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = scorer.run_candidate(v.features())
    return out.video_probs, out.segment_probs, out.segment_embeddings
