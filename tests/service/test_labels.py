"""Label writes without HTTP: the start checks, and the embeddings a label batch takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service import labels
from service.bundle import load_bundle
from service.decode import InputError
from service.scorer import Scorer
from service.stores.memory import MemoryBankStore
from service.yt8m import SEGMENT_FRAMES, Video


@pytest.fixture(scope="module")
def scorer(service_bundle: Path) -> Scorer:
    return Scorer(load_bundle(service_bundle), intra_threads=1, xgb_nthread=1, providers="cpu")


def test_good_starts_come_back_as_int64_in_the_callers_order() -> None:
    got = labels.check_starts([15, 0, 5], num_frames=23)  # 4 whole segments: 0, 5, 10, 15
    assert got.dtype == np.int64 and got.tolist() == [15, 0, 5]


@pytest.mark.parametrize(
    ("starts", "field", "words"),
    [
        ([0, 3], "segments[1].start", "3 is not a multiple of 5"),
        ([20], "segments[0].start", "20 is past the last whole segment of the video (23 frames)"),
        ([0, 7, 25], "segments[1].start", "not a multiple of 5"),  # the first bad one is named
        ([5, 0, 5], "segments", "start 5 is listed twice"),
    ],
)
def test_bad_starts_raise_an_input_error_naming_the_segment(
    starts: list[int], field: str, words: str
) -> None:
    with pytest.raises(InputError) as exc:
        labels.check_starts(starts, num_frames=23)
    assert exc.value.field == field and words in exc.value.message


def test_a_label_batch_takes_the_rows_of_the_labelled_segments(
    scorer: Scorer, test_videos: list[Video]
) -> None:
    v = test_videos[0]
    embeddings = scorer.embed(v.features())  # [S, D]
    last = (v.num_frames // SEGMENT_FRAMES - 1) * SEGMENT_FRAMES
    starts = labels.check_starts([last, 0, 10], v.num_frames)
    batch = labels.label_batch(3, v.id, starts, [1, 0, 1], embeddings)
    assert (batch.class_id, batch.video_id) == (3, v.id)
    assert batch.labels.dtype == np.int8 and batch.labels.tolist() == [1, 0, 1]
    assert batch.embeddings.dtype == np.float32
    np.testing.assert_array_equal(batch.embeddings, embeddings[[last // SEGMENT_FRAMES, 0, 2]])
    store = MemoryBankStore(scorer.bundle.bank)
    before = store.snapshot()
    result = store.add(batch)
    assert result.positive == int(before.pos_count[3]) + 2
    assert result.negative == int(before.neg_count[3]) + 1


def test_a_label_batch_refuses_labels_that_do_not_match_the_starts(
    scorer: Scorer, test_videos: list[Video]
) -> None:
    v = test_videos[0]
    starts = labels.check_starts([0, 5], v.num_frames)
    with pytest.raises(ValueError, match="disagree"):
        labels.label_batch(3, v.id, starts, [1], scorer.embed(v.features()))
