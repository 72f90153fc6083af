"""The candidate generators as torch modules (paper section 3.1): logistic, LSTM, their ensemble.

Every model exposes the same two entry points:

- ``forward(frames [B, T, 1152] float32, lengths [B] int64) -> logits [B, C]`` for training on
  padded batches (the trailing padding never influences a video's output);
- ``graph_outputs(frames [F, 1152]) -> (video_probs [C], segment_probs [S, C],
  segment_embeddings [S, D])`` with S = F // 5, the body of the exported ONNX graph
  (see :mod:`training.export`). A segment's outputs come from the model applied to its 5 frames
  alone; a trailing partial segment is ignored by the segment outputs but seen by the video pass.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from service.yt8m import FEATURE_DIM, SEGMENT_FRAMES
from training.candidates.config import ModelConfig


class Standardize(nn.Module):
    """Per-feature ``(x - mean) / std`` with statistics fitted on the training data.

    Buffers ``mean`` and ``inv_std`` are float32 [1152]; they travel in checkpoints and the graph.
    """

    mean: Tensor
    inv_std: Tensor

    def __init__(self, dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    def fit(self, mean: npt.ArrayLike, std: npt.ArrayLike) -> None:
        m = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        s = torch.as_tensor(np.asarray(std, dtype=np.float32))
        if m.shape != self.mean.shape or s.shape != self.mean.shape:
            raise ValueError(f"statistics must be [{self.mean.shape[0]}], got {m.shape}, {s.shape}")
        self.mean.copy_(m)
        self.inv_std.copy_(1.0 / s.clamp_min(1e-3))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.inv_std


def _segment_count(frames: Tensor) -> int:
    """S = F // 5 for frames [F, D]; traced as a shape computation during ONNX export."""
    return frames.shape[0] // SEGMENT_FRAMES


class LogisticModel(nn.Module):
    """Logistic regression on pooled frames: ``sigmoid(W standardize(mean_t x_t) + b)``.

    Embedding of a segment: its mean dequantized frame, D = 1152.
    """

    kind = "logistic"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm = Standardize()
        self.drop = nn.Dropout(cfg.input_dropout)
        self.head = nn.Linear(FEATURE_DIM, cfg.num_classes)

    @property
    def embedding_dim(self) -> int:
        return FEATURE_DIM

    def forward_pooled(self, pooled: Tensor) -> Tensor:
        """Mean frames [B, 1152] -> logits [B, C]."""
        return self.head(self.drop(self.norm(pooled)))

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """Padded frames [B, T, 1152] with lengths [B] -> logits [B, C]."""
        t = frames.shape[1]
        mask = (torch.arange(t)[None, :] < lengths[:, None]).to(frames.dtype)
        pooled = (frames * mask[:, :, None]).sum(1) / lengths.clamp_min(1)[:, None].to(frames.dtype)
        return self.forward_pooled(pooled)

    def graph_outputs(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """frames [F, 1152] -> video_probs [C], segment_probs [S, C], embeddings [S, 1152]."""
        s = _segment_count(frames)
        video = torch.sigmoid(self.forward_pooled(frames.mean(0, keepdim=True)))[0]
        seg_mean = frames[: s * SEGMENT_FRAMES].reshape(s, SEGMENT_FRAMES, FEATURE_DIM).mean(1)
        seg_probs = torch.sigmoid(self.forward_pooled(seg_mean))
        return video, seg_probs, seg_mean


class LstmModel(nn.Module):
    """The paper's video LSTM: bidirectional LSTM layer(s), a unidirectional LSTM, linear + sigmoid.

    The classifier reads the unidirectional LSTM's last hidden state (``pool="last"``, the paper)
    or the mean of its hidden states over time (``pool="mean"``, which learns far faster from a
    small corpus). ``proj > 0`` inserts a linear projection 1152 -> proj before the LSTMs (a
    low-rank input layer: fewer parameters, about half the compute). Embedding of a segment: the
    mean of the unidirectional LSTM's hidden states over the segment's 5 frames, D = hidden.
    """

    kind = "lstm"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.pool not in ("last", "mean"):
            raise ValueError(f"lstm pool must be 'last' or 'mean', got {cfg.pool!r}")
        self.cfg = cfg
        self.norm = Standardize()
        self.drop = nn.Dropout(cfg.input_dropout)
        self.proj = nn.Linear(FEATURE_DIM, cfg.proj) if cfg.proj > 0 else nn.Identity()
        width = cfg.proj if cfg.proj > 0 else FEATURE_DIM
        self.bi = nn.LSTM(
            width, cfg.hidden, num_layers=cfg.bi_layers, batch_first=True, bidirectional=True
        )
        self.uni = nn.LSTM(2 * cfg.hidden, cfg.hidden, batch_first=True)
        self.head = nn.Linear(cfg.hidden, cfg.num_classes)

    @property
    def embedding_dim(self) -> int:
        return self.cfg.hidden

    def _inputs(self, frames: Tensor) -> Tensor:
        return self.proj(self.drop(self.norm(frames)))  # type: ignore[no-any-return]

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Unpadded frames [B, T, 1152] -> (hidden states [B, T, H], pooled state [B, H])."""
        y, _ = self.bi(self._inputs(x))
        z, (h, _) = self.uni(y)
        return z, (z.mean(1) if self.cfg.pool == "mean" else h[-1])

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """Padded frames [B, T, 1152], lengths [B] -> logits [B, C] (packed: padding is inert)."""
        lengths = lengths.cpu().clamp_min(1)
        packed = pack_padded_sequence(
            self._inputs(frames), lengths, batch_first=True, enforce_sorted=False
        )
        y, _ = self.bi(packed)
        z, (h, _) = self.uni(y)
        if self.cfg.pool == "last":
            return self.head(h[-1])
        zp, _ = pad_packed_sequence(z, batch_first=True)  # [B, T', H], zeros past each length
        return self.head(zp.sum(1) / lengths[:, None].to(zp.dtype))

    def forward_unpadded(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Unpadded frames [B, T, 1152] -> (logits [B, C], mean hidden state [B, H])."""
        z, pooled = self.encode(frames)
        return self.head(pooled), z.mean(1)

    def graph_outputs(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """frames [F, 1152] -> video_probs [C], segment_probs [S, C], segment_embeddings [S, H]."""
        s = _segment_count(frames)
        video_logits, _ = self.forward_unpadded(frames.unsqueeze(0))
        segs = frames[: s * SEGMENT_FRAMES].reshape(s, SEGMENT_FRAMES, FEATURE_DIM)
        # One dummy segment keeps the LSTM batch non-empty when F < 5 (S = 0); it is sliced off.
        dummy = torch.zeros(1, SEGMENT_FRAMES, FEATURE_DIM, dtype=frames.dtype)
        seg_logits, seg_emb = self.forward_unpadded(torch.cat([segs, dummy], 0))
        return torch.sigmoid(video_logits[0]), torch.sigmoid(seg_logits[:s]), seg_emb[:s]


class EnsembleModel(nn.Module):
    """Average of a logistic and an LSTM generator; embeddings are the LSTM's (D = LSTM hidden)."""

    kind = "ensemble"

    def __init__(self, logistic: LogisticModel, lstm: LstmModel) -> None:
        super().__init__()
        if logistic.cfg.num_classes != lstm.cfg.num_classes:
            raise ValueError(
                f"ensemble members disagree on the class count: logistic "
                f"{logistic.cfg.num_classes}, lstm {lstm.cfg.num_classes}"
            )
        self.logistic = logistic
        self.lstm = lstm
        self.cfg = replace(lstm.cfg, model="ensemble")

    @property
    def embedding_dim(self) -> int:
        return self.lstm.embedding_dim

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """Padded frames [B, T, 1152], lengths [B] -> logit of the averaged probabilities [B, C]."""
        p_log = torch.sigmoid(self.logistic(frames, lengths))
        p = 0.5 * (p_log + torch.sigmoid(self.lstm(frames, lengths)))
        return torch.logit(p, eps=1e-7)

    def graph_outputs(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """frames [F, 1152] -> video_probs [C], segment_probs [S, C], segment_embeddings [S, H]."""
        lv, ls, _ = self.logistic.graph_outputs(frames)
        rv, rs, emb = self.lstm.graph_outputs(frames)
        return 0.5 * (lv + rv), 0.5 * (ls + rs), emb


CandidateModule = LogisticModel | LstmModel | EnsembleModel


def build_model(cfg: ModelConfig) -> LogisticModel | LstmModel:
    """A fresh model for ``cfg`` (``logistic`` or ``lstm``)."""
    if cfg.model == "logistic":
        return LogisticModel(cfg)
    if cfg.model == "lstm":
        return LstmModel(cfg)
    raise ValueError(f"cannot build model {cfg.model!r} (expected 'logistic' or 'lstm')")
