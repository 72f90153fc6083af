"""Top-N selections: exact against a brute-force sort, and mergeable in any split and order."""

from __future__ import annotations

import numpy as np
import pytest

from batch.topn import Entries, SegmentTops, VideoTop, in_cg, select, tokens_of


def _entries(rng: np.random.Generator, n: int) -> tuple[Entries, np.ndarray]:
    # few distinct scores, so ties at every boundary
    score = rng.integers(0, 6, n).astype(np.float32) / 5
    ordinal = rng.integers(0, 30, n).astype(np.int64)
    start = (rng.integers(0, 12, n) * 5).astype(np.int64)
    keep = np.unique(np.stack([ordinal, start]), axis=1, return_index=True)[1]
    ids = np.array([f"v{i:02d}" for i in range(30)])
    return Entries(score[keep], ordinal[keep], start[keep]), ids


def _csv_brute(e: Entries, n: int) -> list[tuple[int, int]]:
    rows = sorted(zip(-e.score.astype(float), e.ordinal.tolist(), e.start.tolist(), strict=True))
    return [(o, s) for _, o, s in rows[:n]]


def _redis_brute(e: Entries, ids: np.ndarray, n: int) -> set[str]:
    tok = tokens_of(ids[e.ordinal], e.start).tolist()
    rows = sorted(zip(e.score.tolist(), tok, strict=True), reverse=True)  # ZRANGE ... REV
    return {t for _, t in rows[:n]}


@pytest.mark.parametrize("seed", range(5))
def test_merged_parts_select_what_one_sort_selects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    e, ids = _entries(rng, 200)
    n = 17
    tops = SegmentTops(1, n, ("csv", "redis"))
    perm = rng.permutation(len(e))
    for part in np.array_split(perm, 7):  # parts in any order, each pre-selected like a task
        tops.add(0, select(e.take(part), n, ("csv", "redis"), ids.__getitem__), ids.__getitem__)
    got = tops.final(0, ids.__getitem__)
    order = got.csv_order()[:n]
    assert list(zip(got.ordinal[order].tolist(), got.start[order].tolist(), strict=True)) == (
        _csv_brute(e, n)
    )
    from batch.topn import top_set

    red = top_set(
        got.score,
        n,
        lambda t: np.argsort(tokens_of(ids[got.ordinal[t]], got.start[t]))[::-1],
    )
    assert set(tokens_of(ids[got.ordinal[red]], got.start[red]).tolist()) == _redis_brute(e, ids, n)


def test_video_top_thresholds_pick_the_stable_argsort_top_k() -> None:
    rng = np.random.default_rng(3)
    vp = (rng.integers(0, 4, (40, 5)) / 4).astype(np.float32)  # many ties
    ords = np.arange(40, dtype=np.int64)
    k = 6
    merged = VideoTop.of(vp[:13], ords[:13], k)
    merged = merged.merge(VideoTop.of(vp[13:], ords[13:], k))
    t_vp, t_ord = merged.thresholds()
    want = np.zeros(vp.shape, bool)  # what ccrl submit computes
    want[np.argsort(-vp, axis=0, kind="stable")[:k], np.arange(5)[None, :]] = True
    got = np.stack([in_cg(vp[i], i, t_vp, t_ord) for i in range(40)])
    np.testing.assert_array_equal(got, want)
