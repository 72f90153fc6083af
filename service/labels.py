"""Label writes without HTTP: check the labelled segments of a video, take their embeddings.

A label write names segments by their start frame. A start must be a multiple of 5
(:data:`~service.yt8m.SEGMENT_FRAMES`), fall inside the video's whole segments, and appear once;
the first broken rule raises :class:`~service.decode.InputError` naming the segment
(``segments[i].start``, or ``segments`` for a duplicate); a removal's starts follow the same
rules but the end (:func:`check_removal`). The embeddings of the labelled segments
are rows ``start // 5`` of the candidate model's segment embeddings of the whole video.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from service.decode import InputError
from service.stores.base import LabelBatch
from service.yt8m import SEGMENT_FRAMES

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def check_starts(starts: Sequence[int], num_frames: int) -> I64:
    """The labelled segments' start frames as int64 [n], checked against a video of
    ``num_frames`` frames; raises :class:`InputError` at the first bad start."""
    arr = np.asarray(starts, dtype=np.int64).reshape(-1)
    num_seg = num_frames // SEGMENT_FRAMES
    for i, st in enumerate(arr.tolist()):
        if st % SEGMENT_FRAMES:
            raise InputError(f"segments[{i}].start", f"{st} is not a multiple of 5")
        if st // SEGMENT_FRAMES >= num_seg:
            raise InputError(
                f"segments[{i}].start",
                f"{st} is past the last whole segment of the video ({num_frames} frames)",
            )
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise InputError("segments", f"start {int(uniq[counts > 1][0])} is listed twice")
    return arr


def check_removal(starts: Sequence[int]) -> I64:
    """The start frames of segments to remove as int64 [n]: multiples of 5, each once (whether
    the bank has them is the bank's answer); raises :class:`InputError` at the first bad one."""
    arr = np.asarray(starts, dtype=np.int64).reshape(-1)
    for i, st in enumerate(arr.tolist()):
        if st % SEGMENT_FRAMES:
            raise InputError(f"starts[{i}]", f"{st} is not a multiple of 5")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise InputError("starts", f"start {int(uniq[counts > 1][0])} is listed twice")
    return arr


def segment_rows(segment_embeddings: F32, starts: I64) -> F32:
    """The embeddings of the segments at ``starts``: float [S, D] and int64 [n] checked starts
    -> float32 [n, D]."""
    return np.asarray(segment_embeddings[starts // SEGMENT_FRAMES], dtype=np.float32)


def label_batch(
    class_id: int,
    video_id: str,
    starts: I64,
    labels: Sequence[int],
    segment_embeddings: F32,
) -> LabelBatch:
    """The bank write of one label request.

    Args:
        class_id: the labelled class.
        video_id: the video the segments come from.
        starts: int64 [n] start frames, already checked by :func:`check_starts`.
        labels: [n] 1 (positive) or 0 (negative), in the order of ``starts``.
        segment_embeddings: float32 [S, D], the candidate model's embeddings of the whole video.
    """
    return LabelBatch(
        class_id,
        video_id,
        starts,
        np.asarray(labels, dtype=np.int8),
        segment_rows(segment_embeddings, starts),
    )
