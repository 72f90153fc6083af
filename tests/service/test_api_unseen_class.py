"""A class the GBM never saw in training is started with a handful of labelled segments (the
paper's "generalize to new unseen classes") and becomes retrievable across the corpus."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.decode import encode_frames
from service.yt8m import Video


def _world_videos(corpus: Path, split: str) -> list[tuple[Video, Any]]:
    """The split's videos with their ground truth, regenerated from ``synth.json``."""
    from training.synth import SynthConfig, build_world, generate_split

    meta = json.loads((corpus / "synth.json").read_text())
    names = {f.name for f in dataclasses.fields(SynthConfig)}
    cfg = {
        k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items() if k in names
    }
    world = build_world(SynthConfig(**cfg))
    return list(generate_split(world, split, with_truth=True))  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_class_unseen_in_training_becomes_retrievable_from_a_few_labels(
    sim_bundle: Path, service_corpus: Path, make_payload: Any, api_token: str
) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.config import Settings

    manifest = json.loads((sim_bundle / "manifest.json").read_text())
    num_classes = len(manifest["classes"])
    unseen = sorted(set(range(num_classes)) - set(manifest["rated_classes"]))
    assert unseen, "the tiny corpus should leave some classes unrated"
    videos = _world_videos(service_corpus, "train")
    # the unseen class with the most clearly shown segments, and 4 videos that show it
    u = max(unseen, key=lambda c: sum(int((t.segment_coverage(c) >= 4).sum()) for _, t in videos))
    showing = [(v, t) for v, t in videos if (t.segment_coverage(u) == 5).sum() >= 2][:4]
    assert len(showing) == 4, "not enough videos showing the class"
    labelled = {}
    truth = {f"{v.id}-copy": t.segment_coverage(u) for v, t in showing}
    for v, t in showing:
        cov = t.segment_coverage(u)
        labelled[v.id] = (np.flatnonzero(cov == 5)[:2] * 5, np.flatnonzero(cov == 0)[:2] * 5)

    def copy(v: Video) -> dict[str, Any]:  # the same frames under a new id: not its own bank
        return make_payload(v, video_id=f"{v.id}-copy", max_classes=num_classes, overwrite=True)

    settings = Settings(
        bundle=sim_bundle, api_token=api_token, redis_url=None, ort_intra_threads=1, xgb_nthread=1
    )
    auth = {"Authorization": f"Bearer {api_token}"}  # indexing and labels need the token
    with TestClient(create_app(settings)) as client:
        # before: the class is never a candidate and nothing is indexed for it
        for v, _ in showing:
            body = client.post("/localize", json=copy(v), headers=auth).json()
            assert u not in [c["class_id"] for c in body["classes"]]
        assert client.get(f"/classes/{u}/top-segments").json()["total"] == 0

        # a handful of labels: 2 clearly-showing and 2 background segments per video
        for v, _ in showing:
            pos, neg = labelled[v.id]
            segs = [{"start": int(s), "label": 1} for s in pos]
            segs += [{"start": int(s), "label": 0} for s in neg]
            body = {
                "video_id": v.id,
                "rgb": encode_frames(v.rgb),
                "audio": encode_frames(v.audio),
                "segments": segs,
            }
            r = client.post(f"/classes/{u}/labels", json=body, headers=auth)
            assert r.status_code == 201, r.text
        classes = client.get("/classes").json()["classes"]
        assert classes[u]["bank"] == {"positive": 8, "negative": 8}

        # after: the class is a candidate, it is indexed, and its best segments are the ones
        # that look like the labelled positives
        scores: dict[tuple[str, int], float] = {}
        for v, _ in showing:
            r = client.post("/localize", json=copy(v), headers=auth)
            assert r.status_code == 200
            entry = next(c for c in r.json()["classes"] if c["class_id"] == u)
            scores.update({(v.id, s["start"]): s["score"] for s in entry["segments"]})
        pos_scores = [scores[(vid, int(s))] for vid, (p, _) in labelled.items() for s in p]
        neg_scores = [scores[(vid, int(s))] for vid, (_, n) in labelled.items() for s in n]
        auc = float(np.mean(np.asarray(pos_scores)[:, None] > np.asarray(neg_scores)[None, :]))
        top = client.get(f"/classes/{u}/top-segments", params={"limit": 8}).json()
        assert top["total"] == len(scores)
        shown = [truth[s["video_id"]][s["start"] // 5] >= 3 for s in top["segments"]]
        base = float(np.mean(np.concatenate([c >= 3 for c in truth.values()])))
        print(
            f"unseen class {u}: AUC labelled pos vs neg {auc:.2f}; top 8 showing it "
            f"{np.mean(shown):.2f} (base rate {base:.2f})"
        )
        assert auc >= 0.85
        assert np.mean(shown) > base  # better than chance on a 20-class toy corpus
