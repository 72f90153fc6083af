"""The scorer: candidate choice, ranking, and parity with ``ccrl submit`` for the same bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.bank import ClassBank
from service.bundle import load_bundle
from service.scorer import Scorer, UnknownClassError
from service.yt8m import SEGMENT_FRAMES, Video


@pytest.fixture(scope="module")
def scorer(service_bundle: Path) -> Scorer:
    return Scorer(load_bundle(service_bundle), intra_threads=1, xgb_nthread=1, providers="cpu")


def test_localize_ranks_every_segment_of_each_candidate(
    scorer: Scorer, test_videos: list[Video]
) -> None:
    v = test_videos[0]
    bank = scorer.bundle.bank
    loc = scorer.localize(v.features(), bank, video_id=v.id, max_classes=3, max_segments=4)
    s = v.num_frames // SEGMENT_FRAMES
    assert loc.scores.shape == (len(loc.class_ids), s) and loc.num_pairs == s * len(loc.class_ids)
    assert len(loc.classes) <= 3
    vp = scorer.run_candidate(v.features()).video_probs
    allowed = np.flatnonzero(scorer.localizable(bank))
    best = allowed[np.argsort(-vp[allowed], kind="stable")[:3]]
    np.testing.assert_array_equal(loc.class_ids, best)
    for k, c in enumerate(loc.classes):
        assert len(c.starts) == min(4, s)
        np.testing.assert_array_equal(c.scores, np.sort(loc.scores[k])[::-1][: len(c.scores)])
        np.testing.assert_array_equal(loc.scores[k][c.starts // SEGMENT_FRAMES], c.scores)
        assert c.video_score == pytest.approx(float(vp[c.class_id]))
    entries = loc.index_entries()
    assert set(entries) == set(loc.class_ids.tolist())
    starts, scores = entries[int(loc.class_ids[0])]
    assert len(starts) == s and starts[-1] == (s - 1) * SEGMENT_FRAMES
    np.testing.assert_array_equal(scores, loc.scores[0])
    assert set(loc.timings) == {"candidate", "features", "gbm", "rank"}


def test_candidate_threshold_and_localizable_classes(
    scorer: Scorer, test_videos: list[Video]
) -> None:
    v = test_videos[1]
    bank = scorer.bundle.bank
    vp = scorer.run_candidate(v.features()).video_probs
    cut = float(np.sort(vp)[-2])
    got = scorer.candidate_classes(vp, bank, max_classes=50, min_video_score=cut)
    assert all(vp[c] >= cut for c in got) and scorer.localizable(bank)[got].all()
    # a class with no rating and no positive is not localizable until it gets a positive
    unrated = np.flatnonzero(~scorer.rated & (bank.pos_count == 0))
    if unrated.size:
        c = int(unrated[0])
        assert c not in scorer.candidate_classes(vp, bank, max_classes=10_000).tolist()
        richer = bank.add(np.ones((1, bank.dim)), [c], [1], ["x"], [0])
        assert c in scorer.candidate_classes(vp, richer, max_classes=10_000).tolist()


def test_check_classes(scorer: Scorer) -> None:
    np.testing.assert_array_equal(scorer.check_classes([3, 1, 3, 0]), [3, 1, 0])
    with pytest.raises(UnknownClassError, match=r"unknown class id\(s\) 99999"):
        scorer.check_classes([1, 99999])


def test_no_candidates_gives_an_empty_answer(scorer: Scorer, test_videos: list[Video]) -> None:
    v = test_videos[0]
    empty = ClassBank.empty(scorer.num_classes, scorer.bundle.bank.dim)
    loc = scorer.localize(v.features(), empty, max_classes=5, min_video_score=1.01)
    assert loc.classes == [] and loc.num_pairs == 0


@pytest.mark.slow
def test_service_scores_equal_ccrl_submit_scores(
    service_bundle: Path,
    test_videos: list[Video],
    client: Any,
    make_payload: Any,
    tmp_path: Path,
    api_token: str,
) -> None:
    """Parity: the service's scores for a video equal the offline ``ccrl submit`` scores for the
    same video and bundle (every rated class, no candidate generation)."""
    from service.tfrecord import write_videos
    from training.submission import read_submission
    from training.submit import run_submit, score_corpus

    bundle = load_bundle(service_bundle)
    rated = bundle.rated_classes.tolist()
    videos = test_videos[:6]
    offline = score_corpus(
        bundle, videos, models=["ccrl"], cg_modes=[False], threads=1, progress=False
    )
    col = {c: r for r, c in enumerate(offline.classes.tolist())}
    row_of = {
        (offline.video_ids[int(vi)], int(st)): i
        for i, (vi, st) in enumerate(zip(offline.seg_video, offline.seg_start, strict=True))
    }
    served: dict[int, dict[str, float]] = {c: {} for c in rated}
    for v in videos:
        body = make_payload(v, video_id=v.id, classes=rated, max_segments=1000)
        r = client.post("/localize", json=body, headers={"Authorization": f"Bearer {api_token}"})
        assert r.status_code == 200
        for c in r.json()["classes"]:
            for s in c["segments"]:
                want = offline.scores["ccrl"][row_of[(v.id, s["start"])], col[c["class_id"]]]
                assert s["score"] == pytest.approx(float(want), rel=1e-6, abs=1e-7)
                served[c["class_id"]][f"{v.id}:{s['start']}"] = s["score"]
    # the real command: its ranked lists agree with the service's scores and its corpus index
    data = tmp_path / "data"
    write_videos(videos, data, num_shards=1)
    sub = read_submission(
        run_submit(service_bundle, [data], tmp_path / "sub.csv", cg=False, progress=False)
    )
    for c in rated:
        tokens = sub.get(c, [])
        assert set(tokens) == set(served[c])
        scores = [served[c][t] for t in tokens]
        assert scores == sorted(scores, reverse=True)
        top = client.get(f"/classes/{c}/top-segments", params={"limit": 1000}).json()
        assert [s["score"] for s in top["segments"]] == sorted(served[c].values(), reverse=True)
