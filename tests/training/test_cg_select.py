"""Candidate generation and the service's candidate classes chosen on holdout pairs."""

from __future__ import annotations

import numpy as np

from training.cg_select import (
    SHARES,
    HoldoutPairs,
    choose_cg,
    choose_service,
    service_keep,
    top_k_mask,
    videos_per_class,
)


def _holdout(
    *, minor_videos: int, absent_videos: int, videos: int = 200, seed: int = 0
) -> HoldoutPairs:
    """Two ranked classes (ids 3 and 7) over ``videos`` videos of a 10-class vocabulary.

    Per class: 10 videos that show it and have a top video score; ``minor_videos`` that show it
    with a video score below every other video's (CG at 1/20 loses them); ``absent_videos`` rated
    for it that do not show it, with a low video score (all negatives, ranked high by the GBM:
    CG that drops them gains). Positives score 0.9, negatives 0.1 but the absent ones 0.95.
    """
    rng = np.random.default_rng(seed)
    vp = rng.uniform(0.2, 0.6, (videos, 10)).astype(np.float32)
    scores, cls, vid, tokens, labels = [], [], [], [], []
    v = 0
    for c in (3, 7):
        groups = (("main", 10), ("minor", minor_videos), ("absent", absent_videos))
        for kind, n in groups:
            for _ in range(n):
                vp[v, c] = {"main": 0.99, "minor": 0.01, "absent": 0.05}[kind]
                for s, y in ((0, 1.0), (5, 0.0)) if kind != "absent" else ((0, 0.0), (5, 0.0)):
                    scores.append(0.95 if kind == "absent" else (0.9 if y else 0.1))
                    cls.append(c)
                    vid.append(v)
                    tokens.append(f"v{v}:{s}")
                    labels.append(y)
                v += 1
    return HoldoutPairs(
        np.array(scores, np.float32),
        np.array(cls, np.int64),
        np.array(vid, np.int64),
        tokens,
        np.array(labels, np.float32),
        vp,
        np.full(videos, 20, np.int64),
        np.array([3, 7], np.int64),
    )


def test_k_of_a_share_and_the_budget() -> None:
    assert videos_per_class(300, 1 / 20) == 15 and videos_per_class(19, 1 / 20) == 1
    assert videos_per_class(300, 1.0) == 300
    assert videos_per_class(10_000, 1.0, mean_segments=50) == 2000  # 100,000 segments
    mask = top_k_mask(np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.4]], np.float32), 2)
    assert mask.tolist() == [[False, True], [True, False], [True, True]]


def test_cg_grows_until_it_costs_no_holdout_map() -> None:
    # 12 minor videos per class: the top 1/20 (10 videos) keeps only the main ones
    ch = choose_cg(_holdout(minor_videos=12, absent_videos=0))
    assert ch["holdout_recall_paper_rule"] < 1.0
    assert ch["holdout_map_paper_rule"] < ch["holdout_map_no_cg"]
    assert ch["holdout_map"] >= ch["holdout_map_no_cg"] - ch["tolerance"]
    assert ch["holdout_recall"] == 1.0
    # the minor videos rank below every other video: only no CG keeps them
    assert ch["video_share"] == 1.0 and ch["no_cg"]
    assert [r["video_share"] for r in ch["curve"]] == list(SHARES)


def test_cg_kept_where_it_removes_rated_negatives() -> None:
    ch = choose_cg(_holdout(minor_videos=0, absent_videos=5))
    assert ch["edge_share"] == SHARES[0]  # the top 10 videos are the main ones
    assert ch["video_share"] == SHARES[2] == 2 * SHARES[0]  # the safety margin
    assert ch["holdout_map"] > ch["holdout_map_no_cg"] + 0.1 and ch["holdout_recall"] == 1.0


def test_service_classes_chosen_the_same_way() -> None:
    h = _holdout(minor_videos=3, absent_videos=0)
    sv = choose_service(h)
    # a minor video ranks its class last of 2 ranked classes: both classes are needed
    assert sv["max_classes"] == 2 and sv["holdout_map"] == sv["holdout_map_all_classes"]
    assert sv["min_video_score"] <= 0.01  # the minor videos' score is 0.01
    keep = service_keep(h.video_probs[:, h.classes], 1, 0.5)
    assert keep.sum(1).max() == 1 and not keep[h.video_probs[:, h.classes].max(1) < 0.5].any()
