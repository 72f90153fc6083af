"""Stage 2 of ``ccrl train``: the rated ``validate/`` videos and their 90/10 split by video.

The 10% holdout videos drive every early stop and every choice of the later stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from service.yt8m import Video
    from training.stages.run import TrainRun


HOLDOUT_FRACTION = 0.1
"""Share of the ``validate/`` videos held out for early stopping and every choice."""


@dataclass
class Validate:
    """Stage 2: the ``validate/`` videos and the holdout.

    Attributes:
        videos: the V videos in reading order (emptied once the baselines are trained).
        holdout: bool [V], the videos held out (10%, by video).
        segment_means: the mean frame of every whole segment of every video, float32
            [S_v, 1152] (computed once by the first generator that needs them).
    """

    videos: list[Video]
    holdout: npt.NDArray[np.bool_]
    segment_means: list[npt.NDArray[np.float32]] | None = None

    @property
    def num_videos(self) -> int:
        return len(self.holdout)


def read_validate(run: TrainRun) -> Validate:
    """Read ``validate/`` (at least 2 rated videos) and split it by video."""
    from service.tfrecord import read_videos
    from training.ccrl import split_by_video

    videos = list(read_videos([run.data / "validate"]))
    if sum(1 for v in videos if len(v.segment_labels)) < 2:
        raise ValueError(f"{run.data / 'validate'}: needs at least 2 rated videos")
    _, holdout = split_by_video(len(videos), HOLDOUT_FRACTION, run.seed)
    return Validate(videos, holdout)
