"""Video-level candidate generators (paper section 3.1, Table 1): settings, models, training.

Three generators over the video vocabulary, trained with binary cross-entropy on the video-level
labels of ``train/``:

- ``logistic``: a linear layer with a sigmoid on the video's mean frame (the YouTube-8M starter
  model). Its segment embedding is the segment's mean dequantized frame, D = 1152.
- ``lstm``: the paper's model: stacked bidirectional LSTM layers, then a unidirectional LSTM, then a
  linear layer with a sigmoid. The ``paper`` preset reads the last hidden state (1024 cells, two
  bidirectional layers); the ``small`` preset (with ~1000 training videos the last-state LSTM did
  not learn within minutes: its loss stayed at the label prior) projects the frames to 256
  dimensions (wider than the class count) with a LayerNorm and reads the mean and max of the
  hidden states over time, trained with input dropout 0.5 and a one-cycle learning-rate
  schedule; and it is, honestly named, *a logistic path plus a recurrent residual*: the trained
  logistic generator (frozen, a per-class scale of its logits aside) on the mean frame, plus the
  recurrent branch, whose head starts at zero; the kept epoch is the best validation mAP, the
  start (the logistic model itself) included (the measurements are in
  :data:`~training.candidates.config.PRESETS`). Its segment embedding is the mean hidden state of
  the unidirectional LSTM over the segment's 5 frames (segment fed alone), D = hidden; the
  pipeline also tries the segments' mean frames instead (``FrameEmbeddings``).
- ``ensemble``: the average of both models' probabilities; its embeddings are the LSTM's.

The modules, in the order a newcomer reads them:

- :mod:`~training.candidates.config`: :class:`ModelConfig`, the ``small`` / ``paper`` presets;
- :mod:`~training.candidates.models`: the torch modules (``forward`` for padded training batches,
  ``graph_outputs`` for the exported graph, see :mod:`training.export`);
- :mod:`~training.candidates.loop`: the training loop of one generator (:func:`train_model`);
- :mod:`~training.candidates.checkpoint`: the per-epoch checkpoints and resuming;
- :mod:`~training.candidates.run`: ``ccrl train-candidates`` in stages (:func:`train_candidates`,
  :func:`run_train_candidates`) and the batch scoring of a corpus with an exported graph
  (:func:`score_videos_onnx`, through :mod:`service.candidate` like the service).

The names below are the package's API (``from training.candidates import train_candidates``).
"""

from training.candidates.checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    model_from_checkpoint,
)
from training.candidates.config import (
    MODEL_KINDS,
    PRESET_NAMES,
    PRESETS,
    ModelConfig,
    ModelKind,
    model_config,
)
from training.candidates.loop import TrainOutcome, split_train_val, train_model
from training.candidates.models import (
    CandidateModule,
    EnsembleModel,
    LogisticModel,
    LstmModel,
    Standardize,
    build_model,
)
from training.candidates.run import (
    CandidateResult,
    rated_split,
    run_train_candidates,
    score_videos_onnx,
    train_candidates,
    vocabulary_size,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "MODEL_KINDS",
    "PRESETS",
    "PRESET_NAMES",
    "CandidateModule",
    "CandidateResult",
    "EnsembleModel",
    "LogisticModel",
    "LstmModel",
    "ModelConfig",
    "ModelKind",
    "Standardize",
    "TrainOutcome",
    "build_model",
    "load_checkpoint",
    "model_config",
    "model_from_checkpoint",
    "rated_split",
    "run_train_candidates",
    "score_videos_onnx",
    "split_train_val",
    "train_candidates",
    "train_model",
    "vocabulary_size",
]
