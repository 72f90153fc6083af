"""Stage 4 of ``ccrl train``: the baselines (``training.baselines``).

The LSTM segment classifier (from the candidate LSTM) and the ConvNet (pre-trained on the
``train/`` video labels), fine-tuned on the rated ``validate/`` segments with the same split as
CCRL, exported to ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from training.baselines import Baseline, BaselineResult, SegmentSet
    from training.stages.generators import Generators
    from training.stages.run import TrainRun
    from training.stages.validate import Validate


@dataclass
class FittedBaseline:
    """Stage 4, one baseline: fine-tuned on the rated ``validate/`` segments, exported to ONNX.

    Attributes:
        result: the fine-tuned model and its holdout probabilities float32 [M, C].
        graph: its ONNX graph in the work folder.
        info: what the manifest's ``config.training`` records of it.
    """

    result: BaselineResult
    graph: Path
    info: dict[str, Any]


def _fit(
    run: TrainRun, name: str, init: Baseline, segments: SegmentSet, val: Validate
) -> FittedBaseline:
    """Fine-tune ``init`` on ``segments`` (CCRL's holdout), export ``baseline_{name}.onnx``."""
    from training import baselines as bl

    res = bl.finetune(
        init,
        segments,
        val.holdout,
        run.finetune,
        seed=run.seed,
        progress=run.progress,
        name=name,
    )
    graph = bl.export_baseline(res.model, run.work / f"baseline_{name}.onnx")
    return FittedBaseline(res, graph, res.info())


def fit_lstm_baseline(
    run: TrainRun, gens: Generators, segments: SegmentSet, val: Validate
) -> FittedBaseline:
    """The LSTM segment classifier: the candidate LSTM fine-tuned on ``segments``."""
    from training.baselines import baseline_from_candidate

    return _fit(run, "lstm", baseline_from_candidate(gens.lstm), segments, val)


def fit_convnet_baseline(
    run: TrainRun, gens: Generators, segments: SegmentSet, val: Validate
) -> tuple[FittedBaseline, npt.NDArray[np.int64]]:
    """The ConvNet pre-trained on the ``train/`` video labels, then fine-tuned on ``segments``.

    Returns the baseline and int64 [C], the ``train/`` videos labelled with each class.
    """
    from training import baselines as bl
    from training.data import load_split

    net = bl.convnet_like(gens.lstm)
    train_cache = load_split(run.data / "train")
    train_videos = np.bincount(train_cache.labels, minlength=gens.num_classes)[: gens.num_classes]
    losses = bl.pretrain_convnet(
        net, train_cache, epochs=run.convnet_pretrain_epochs, seed=run.seed, progress=run.progress
    )
    fit = _fit(run, "convnet", net, segments, val)
    fit.info["pretrain_losses"] = losses
    return fit, train_videos
