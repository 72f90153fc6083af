"""The localize-then-index step without HTTP: decode, score, index, and an unreachable index as a
warning (a real Redis server, stopped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.bundle import load_bundle
from service.config import Settings
from service.decode import InputError, encode_frames
from service.localize import LocalizeQuery, Localizer
from service.scorer import Scorer, UnknownClassError
from service.stores.memory import MemoryBankStore, MemoryIndexStore
from service.stores.redis import RedisBackend, RedisIndexStore
from service.yt8m import SEGMENT_FRAMES, Video


@pytest.fixture(scope="module")
def scorer(service_bundle: Path) -> Scorer:
    return Scorer(load_bundle(service_bundle), intra_threads=1, xgb_nthread=1, providers="cpu")


def _localizer(scorer: Scorer, index: Any = None, **settings: Any) -> Localizer:
    bank = MemoryBankStore(scorer.bundle.bank)
    return Localizer(scorer, bank, index or MemoryIndexStore(), Settings(**settings))


def _query(v: Video, **kw: Any) -> LocalizeQuery:
    return LocalizeQuery(encode_frames(v.rgb), encode_frames(v.audio), **kw)


def test_a_video_is_scored_then_indexed(scorer: Scorer, test_videos: list[Video]) -> None:
    v = test_videos[0]
    loc = _localizer(scorer, max_classes=3, max_segments=2)
    done = loc.localize(_query(v, video_id=v.id))
    direct = scorer.localize(
        v.features(), scorer.bundle.bank, video_id=v.id, max_classes=3, max_segments=2
    )
    np.testing.assert_array_equal(done.localization.class_ids, direct.class_ids)
    np.testing.assert_array_equal(done.localization.scores, direct.scores)
    assert all(len(c.starts) == 2 for c in done.localization.classes)  # the settings' limits
    assert done.indexed and not done.warnings
    num_seg = v.num_frames // SEGMENT_FRAMES
    assert done.indexed_segments == num_seg * len(direct.class_ids)
    assert list(done.timings) == ["decode", "bank", "candidate", "features", "gbm", "rank", "index"]
    c = int(direct.class_ids[0])
    total, entries = loc.index_store.top(c, limit=num_seg)
    assert total == num_seg and {e.video_id for e in entries} == {v.id}
    assert sorted(e.start for e in entries) == list(range(0, num_seg * SEGMENT_FRAMES, 5))


def test_the_query_overrides_the_settings(scorer: Scorer, test_videos: list[Video]) -> None:
    v = test_videos[1]
    loc = _localizer(scorer, max_classes=3, max_segments=2)
    done = loc.localize(_query(v, video_id=v.id, max_classes=1, max_segments=4, index=False))
    assert len(done.localization.classes) == 1 and len(done.localization.classes[0].starts) == 4
    assert not done.indexed and done.indexed_segments == 0 and "index" not in done.timings
    assert loc.index_store.top(done.localization.classes[0].class_id, limit=5)[0] == 0


def test_without_a_video_id_nothing_is_indexed(scorer: Scorer, test_videos: list[Video]) -> None:
    loc = _localizer(scorer)
    done = loc.localize(_query(test_videos[2], classes=[4, 1, 4]))
    assert done.localization.class_ids.tolist() == [4, 1]
    assert done.video_id is None and not done.indexed and not done.warnings
    assert "index" not in done.timings


def test_an_unreachable_index_is_a_warning_not_an_error(
    scorer: Scorer, test_videos: list[Video], redis_server: Any
) -> None:
    v = test_videos[0]
    index = RedisIndexStore(RedisBackend(redis_server.url, timeout=0.5), cap=1000)
    redis_server.stop()
    done = _localizer(scorer, index=index).localize(_query(v, video_id=v.id))
    reference = _localizer(scorer).localize(_query(v, video_id=v.id))
    np.testing.assert_array_equal(done.localization.scores, reference.localization.scores)
    assert not done.indexed and done.indexed_segments == 0
    assert len(done.warnings) == 1
    assert done.warnings[0].startswith("not indexed: the index store is unavailable")
    assert "index" in done.timings


def test_bad_input_raises_before_anything_is_indexed(
    scorer: Scorer, test_videos: list[Video]
) -> None:
    v = test_videos[0]
    loc = _localizer(scorer)
    short = LocalizeQuery(encode_frames(v.rgb[:3]), encode_frames(v.audio[:3]), video_id=v.id)
    with pytest.raises(InputError):
        loc.localize(short)
    with pytest.raises(UnknownClassError):
        loc.localize(_query(v, video_id=v.id, classes=[scorer.num_classes]))
    assert loc.index_store.top(0, limit=1)[0] == 0


def test_candidate_classes_default_to_the_bundles_holdout_choice(
    scorer: Scorer, test_videos: list[Video]
) -> None:
    """Unset settings take ``max_classes`` / ``min_video_score`` from the manifest (chosen on
    the holdout by ``ccrl train``); settings and the request still override them."""
    chosen = scorer.bundle.manifest.config["service"]
    assert scorer.bundle.candidate_defaults == (
        chosen["max_classes"],
        chosen["min_video_score"],
    )
    loc = _localizer(scorer)
    assert (loc.max_classes, loc.min_video_score) == scorer.bundle.candidate_defaults
    v = test_videos[0]
    done = loc.localize(_query(v, index=False))
    vp = scorer.run_candidate(v.features()).video_probs
    expect = scorer.candidate_classes(
        vp, scorer.bundle.bank, max_classes=loc.max_classes, min_video_score=loc.min_video_score
    )
    assert done.localization.class_ids.tolist() == expect.tolist()
    assert _localizer(scorer, max_classes=1, min_video_score=0.0).max_classes == 1
    one = loc.localize(_query(v, max_classes=1, index=False))
    assert len(one.localization.class_ids) <= 1
