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

    The classifier reads the unidirectional LSTM's last hidden state (``pool="last"``, the paper),
    the mean of its hidden states over time (``pool="mean"``, which learns far faster from a small
    corpus) or their mean and max (``pool="meanmax"``). ``proj > 0`` inserts a linear projection
    1152 -> proj before the LSTMs (``proj_norm``: followed by a LayerNorm, so the LSTM inputs keep
    one scale whatever the frames' statistics); ``skip`` adds the projection's mean over time
    (before the LayerNorm: a linear function of the mean frame, a low-rank logistic model) to
    what the classifier reads, a linear path next to the recurrent one. ``linear`` adds a
    full-rank logistic path instead: a logistic model on the mean frame (its own input
    statistics, a per-class scale of its logits) whose logits are added to the head's; the head
    then starts at zero, so the untrained model is its logistic path, and with ``warm_start`` the
    training loop fills that path with the trained logistic generator and keeps it frozen (the
    recurrent branch learns a residual on top of the logistic model). Embedding of a segment:
    the mean of the unidirectional LSTM's hidden states over the segment's 5 frames, D = hidden.
    """

    kind = "lstm"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.pool not in ("last", "mean", "meanmax"):
            raise ValueError(f"lstm pool must be 'last', 'mean' or 'meanmax', got {cfg.pool!r}")
        if cfg.skip and (cfg.proj <= 0 or cfg.pool == "last"):
            raise ValueError("lstm skip needs proj > 0 and a pooled (mean or meanmax) readout")
        if cfg.warm_start and not cfg.linear:
            raise ValueError("lstm warm_start needs the logistic path (linear)")
        if cfg.calibrate and not cfg.warm_start:
            raise ValueError("lstm calibrate needs a warm-started logistic path (warm_start)")
        self.cfg = cfg
        self.norm = Standardize()
        self.drop = nn.Dropout(cfg.input_dropout)
        self.proj = nn.Linear(FEATURE_DIM, cfg.proj) if cfg.proj > 0 else nn.Identity()
        self.proj_norm = nn.LayerNorm(cfg.proj) if cfg.proj > 0 and cfg.proj_norm else nn.Identity()
        width = cfg.proj if cfg.proj > 0 else FEATURE_DIM
        self.bi = nn.LSTM(
            width, cfg.hidden, num_layers=cfg.bi_layers, batch_first=True, bidirectional=True
        )
        self.uni = nn.LSTM(2 * cfg.hidden, cfg.hidden, batch_first=True)
        head_in = cfg.hidden * (2 if cfg.pool == "meanmax" else 1) + (cfg.proj if cfg.skip else 0)
        self.head = nn.Linear(head_in, cfg.num_classes)
        if cfg.linear:
            # the logistic path: its own statistics (of mean frames, not of frames), no dropout
            self.lin_norm = Standardize()
            self.linear = nn.Linear(FEATURE_DIM, cfg.num_classes)
            # a per-class scale of its logits (calibration that keeps its ranking of the videos)
            self.linear_scale = nn.Parameter(torch.ones(cfg.num_classes))
            # the recurrent branch starts at zero: the untrained model is its logistic path
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def _linear_logits(self, mean_frame: Tensor) -> Tensor | float:
        """The logistic path's logits [B, C] of mean frames [B, 1152] (0 without it)."""
        if not self.cfg.linear:
            return 0.0
        return self.linear(self.lin_norm(mean_frame)) * self.linear_scale

    @property
    def embedding_dim(self) -> int:
        return self.cfg.hidden

    def _inputs(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """(the projection q [..., P], the LSTM input: q after ``proj_norm``)."""
        q = self.proj(self.drop(self.norm(frames)))
        return q, self.proj_norm(q)

    def _readout(self, p: Tensor, z: Tensor, h_last: Tensor, mask: Tensor | None) -> Tensor:
        """What the classifier reads: [B, head_in] from the projections p [B, T, P] (before the
        LayerNorm, so their mean is linear in the mean frame), the hidden states z [B, T, H], the
        last state [B, H] and the valid-frame mask [B, T]."""
        if self.cfg.pool == "last":
            return h_last
        if mask is None:
            parts = [z.mean(1)]
            if self.cfg.pool == "meanmax":
                parts.append(z.max(1).values)
            if self.cfg.skip:
                parts.insert(0, p.mean(1))
            return torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        m = mask[..., None]
        n = m.sum(1).clamp_min(1)
        parts = [(z * m).sum(1) / n]
        if self.cfg.pool == "meanmax":
            parts.append(z.masked_fill(m == 0, -1e4).max(1).values)
        if self.cfg.skip:
            parts.insert(0, (p * m).sum(1) / n)
        return torch.cat(parts, 1) if len(parts) > 1 else parts[0]

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Unpadded frames [B, T, 1152] -> (hidden states [B, T, H], readout [B, head_in])."""
        q, p = self._inputs(x)
        y, _ = self.bi(p)
        z, (h, _) = self.uni(y)
        return z, self._readout(q, z, h[-1], None)

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """Padded frames [B, T, 1152], lengths [B] -> logits [B, C] (packed: padding is inert)."""
        lengths = lengths.cpu().clamp_min(1)
        q, p = self._inputs(frames)
        packed = pack_padded_sequence(p, lengths, batch_first=True, enforce_sorted=False)
        y, _ = self.bi(packed)
        z, (h, _) = self.uni(y)
        t = frames.shape[1]
        mask = (torch.arange(t)[None, :] < lengths[:, None]).to(frames.dtype)
        lin: Tensor | float = 0.0
        if self.cfg.linear:
            lin = self._linear_logits((frames * mask[..., None]).sum(1) / lengths[:, None])
        if self.cfg.pool == "last":
            return self.head(h[-1]) + lin
        zp, _ = pad_packed_sequence(z, batch_first=True, total_length=t)  # zeros past each length
        return self.head(self._readout(q, zp, h[-1], mask)) + lin

    def forward_unpadded(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Unpadded frames [B, T, 1152] -> (logits [B, C], mean hidden state [B, H])."""
        z, pooled = self.encode(frames)
        return self.head(pooled) + self._linear_logits(frames.mean(1)), z.mean(1)

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


def segment_mean_frames(frames: Tensor) -> Tensor:
    """frames [F, 1152] -> the mean frame of every whole segment, [S, 1152]."""
    s = _segment_count(frames)
    return frames[: s * SEGMENT_FRAMES].reshape(s, SEGMENT_FRAMES, FEATURE_DIM).mean(1)


class FrameEmbeddings(nn.Module):
    """A generator whose segment embeddings are the segments' mean frames (D = 1152) instead of
    its own (the LSTM's hidden states): the other embedding the similarity features can use.
    ``video_probs`` and ``segment_probs`` are the wrapped generator's."""

    embedding = "frames"

    def __init__(self, model: LstmModel | EnsembleModel) -> None:
        super().__init__()
        self.model = model
        self.cfg = model.cfg
        self.kind = model.kind

    @property
    def embedding_dim(self) -> int:
        return FEATURE_DIM

    def graph_outputs(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """frames [F, 1152] -> video_probs [C], segment_probs [S, C], mean frames [S, 1152]."""
        video, seg_probs, _ = self.model.graph_outputs(frames)
        return video, seg_probs, segment_mean_frames(frames)


CandidateModule = LogisticModel | LstmModel | EnsembleModel


def build_model(cfg: ModelConfig) -> LogisticModel | LstmModel:
    """A fresh model for ``cfg`` (``logistic`` or ``lstm``)."""
    if cfg.model == "logistic":
        return LogisticModel(cfg)
    if cfg.model == "lstm":
        return LstmModel(cfg)
    raise ValueError(f"cannot build model {cfg.model!r} (expected 'logistic' or 'lstm')")
