"""Traditional segment classifiers (the paper's Figure 1a: one backbone, a per-class output layer).

- ``lstm``: the candidate LSTM (bidirectional then unidirectional LSTM, linear head), initialised
  from the trained candidate weights and fine-tuned with segment-level binary cross-entropy on the
  rated (segment, class) pairs of ``validate/`` (the loss only covers rated entries). A segment is
  fed alone (its 5 frames), as in the candidate graph's segment pass.
- ``convnet``: two width-2 temporal convolutions over the frames (after a per-frame linear
  projection), mean and max pooling, a per-class linear layer. Pre-trained on the video labels of
  ``train/`` (a video is a long segment), then fine-tuned like the LSTM.

Both use the paper's protocol: fine-tune on 90% of the rated videos with early stopping on the other
10% (the chosen epoch count and the holdout predictions are kept), then refit on all rated videos
for that many epochs. Each is exported to ONNX, ``baseline_{name}.onnx``: input ``frames`` float32
[F, 1152] -> output ``segment_probs`` float32 [F // 5, C].
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from service import candidate
from service.candidate import BASELINE_OUTPUT_NAMES
from service.yt8m import FEATURE_DIM, SEGMENT_FRAMES, Video, dequantize
from training.candidates import LstmModel, Standardize
from training.candidates.loop import bce_per_video, optimizer_step
from training.export import INPUT_FORMAT, compare_with_torch, write_onnx

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
BASELINE_NAMES: tuple[str, ...] = ("lstm", "convnet")
GRAD_CLIP = 5.0


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def _segments_of(frames: Tensor) -> tuple[Tensor, int | Tensor]:
    """frames [F, 1152] -> segments [S + 1, 5, 1152] (a zero dummy appended so S may be 0), S."""
    s = frames.shape[0] // SEGMENT_FRAMES
    segs = frames[: s * SEGMENT_FRAMES].reshape(s, SEGMENT_FRAMES, FEATURE_DIM)
    dummy = torch.zeros(1, SEGMENT_FRAMES, FEATURE_DIM, dtype=frames.dtype)
    return torch.cat([segs, dummy], 0), s


class SegmentLstm(nn.Module):
    """The candidate LSTM used as a segment classifier: segments [B, 5, 1152] -> logits [B, C]."""

    kind = "lstm"

    def __init__(self, lstm: LstmModel) -> None:
        super().__init__()
        self.net = copy.deepcopy(lstm)

    @property
    def num_classes(self) -> int:
        return int(self.net.cfg.num_classes)

    def segment_logits(self, segs: Tensor) -> Tensor:
        logits, _ = self.net.forward_unpadded(segs)
        return logits

    def graph(self, frames: Tensor) -> Tensor:
        """frames [F, 1152] -> segment_probs [F // 5, C]."""
        segs, s = _segments_of(frames)
        return torch.sigmoid(self.segment_logits(segs)[:s])


class ConvNet(nn.Module):
    """Per-frame projection, two width-2 convolutions, mean+max pooling, per-class linear layer."""

    kind = "convnet"

    def __init__(
        self, num_classes: int, *, proj: int = 256, hidden: int = 256, dropout: float = 0.3
    ) -> None:
        super().__init__()
        self.norm = Standardize()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(FEATURE_DIM, proj)
        self.conv1 = nn.Conv1d(proj, hidden, kernel_size=2)
        self.conv2 = nn.Conv1d(hidden, hidden, kernel_size=2)
        self.head = nn.Linear(2 * hidden, num_classes)
        self._num_classes = num_classes

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def _features(self, x: Tensor) -> Tensor:
        """[B, T, 1152] -> conv features [B, H, T - 2]."""
        h = torch.relu(self.proj(self.drop(self.norm(x))))
        h = torch.relu(self.conv1(h.transpose(1, 2)))
        return torch.relu(self.conv2(h))

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """Padded videos [B, T, 1152] (T >= 3), lengths [B] -> logits [B, C] (masked pooling)."""
        h = self._features(frames)
        t = h.shape[2]
        valid = (torch.arange(t)[None, :] < (lengths[:, None] - 2).clamp_min(1)).to(h.dtype)
        mean = (h * valid[:, None, :]).sum(2) / valid.sum(1, keepdim=True)
        mx = (h - 1e4 * (1 - valid[:, None, :])).max(2).values
        return self.head(self.drop(torch.cat([mean, mx], 1)))

    def segment_logits(self, segs: Tensor) -> Tensor:
        """Segments [B, 5, 1152] -> logits [B, C]."""
        h = self._features(segs)
        return self.head(self.drop(torch.cat([h.mean(2), h.max(2).values], 1)))

    def graph(self, frames: Tensor) -> Tensor:
        """frames [F, 1152] -> segment_probs [F // 5, C]."""
        segs, s = _segments_of(frames)
        return torch.sigmoid(self.segment_logits(segs)[:s])


Baseline = SegmentLstm | ConvNet


# --------------------------------------------------------------------------------------------
# Data: the rated segments of validate/
# --------------------------------------------------------------------------------------------


@dataclass
class SegmentSet:
    """The rated segments of a split, one row per distinct (video, segment).

    Attributes:
        frames: uint8 [M, 5, 1152] quantized frames.
        video: int64 [M] index of the row's video (order of the videos given).
        segment: int64 [M] segment index within its video.
        target: float32 [M, C] rating (0/1) where rated.
        mask: bool [M, C] True where (segment, class) is rated.
        video_ids: the videos' ids, [V].
    """

    frames: npt.NDArray[np.uint8]
    video: I64
    segment: I64
    target: F32
    mask: npt.NDArray[np.bool_]
    video_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def rows(self, keep_video: npt.NDArray[np.bool_]) -> I64:
        """Row indices whose video is kept (bool [V])."""
        return np.flatnonzero(keep_video[self.video]).astype(np.int64)


def segment_set(videos: Sequence[Video], num_classes: int) -> SegmentSet:
    """Collect the rated, in-range segments of ``videos`` (repeated ratings keep the max)."""
    from training.ccrl import in_range_ratings

    frames, vid, seg, tgt_rows, mask_rows = [], [], [], [], []
    for i, v in enumerate(videos):
        cls, sidx, lab, _ = in_range_ratings(v)
        if len(cls) == 0:
            continue
        q = v.quantized()
        for s in np.unique(sidx).tolist():
            sel = sidx == s
            t = np.zeros(num_classes, np.float32)
            m = np.zeros(num_classes, bool)
            t[cls[sel]] = lab[sel]
            m[cls[sel]] = True
            frames.append(q[s * SEGMENT_FRAMES : (s + 1) * SEGMENT_FRAMES])
            vid.append(i)
            seg.append(s)
            tgt_rows.append(t)
            mask_rows.append(m)
    if not frames:
        raise ValueError("no rated segments to fine-tune on (is the split rated?)")
    return SegmentSet(
        np.stack(frames),
        np.asarray(vid, np.int64),
        np.asarray(seg, np.int64),
        np.stack(tgt_rows),
        np.stack(mask_rows),
        [v.id for v in videos],
    )


def _dequant(q: npt.NDArray[np.uint8]) -> Tensor:
    """uint8 [..., 1152] -> float32 tensor, by :func:`service.yt8m.dequantize`."""
    return torch.from_numpy(dequantize(q))


def masked_bce(logits: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Binary cross-entropy averaged over the rated entries only ([B, C] each)."""
    loss = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneConfig:
    """Segment-level fine-tuning settings."""

    max_epochs: int = 20
    patience: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4


@dataclass
class BaselineResult:
    """A fine-tuned baseline.

    Attributes:
        model: refit on all rated segments.
        epochs: epochs of the refit (the best epoch on the 10% holdout).
        holdout_probs: float32 [M, C] probabilities of the holdout rows by the 90% model (NaN rows
            for training rows), for choosing the ensemble.
        history: per-epoch {train_loss, holdout_loss} of the 90% run.
    """

    model: Baseline
    epochs: int
    holdout_probs: F32
    history: list[dict[str, float]]
    seconds: float

    def info(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "history": self.history,
            "seconds": round(self.seconds, 2),
            "best_holdout_loss": min((h["holdout_loss"] for h in self.history), default=None),
        }


def _epoch(
    model: Baseline,
    data: SegmentSet,
    rows: I64,
    opt: torch.optim.Optimizer,
    cfg: FinetuneConfig,
    rng: np.random.Generator,
) -> float:
    model.train()
    order = rows[rng.permutation(len(rows))]
    total, n = 0.0, 0
    for a in range(0, len(order), cfg.batch_size):
        b = order[a : a + cfg.batch_size]
        logits = model.segment_logits(_dequant(data.frames[b]))
        loss = masked_bce(
            logits, torch.from_numpy(data.target[b]), torch.from_numpy(data.mask[b]).float()
        )
        optimizer_step(model, opt, loss, GRAD_CLIP)
        total += float(loss.detach()) * len(b)
        n += len(b)
    return total / max(n, 1)


@torch.no_grad()
def predict_segments(model: Baseline, data: SegmentSet, rows: I64, batch: int = 256) -> F32:
    """Probabilities float32 [len(rows), C] of the given rows (eval mode)."""
    model.eval()
    out = [
        torch.sigmoid(model.segment_logits(_dequant(data.frames[rows[a : a + batch]]))).numpy()
        for a in range(0, len(rows), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.num_classes), np.float32)


def _holdout_loss(probs: F32, data: SegmentSet, rows: I64) -> float:
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    t, m = data.target[rows], data.mask[rows]
    ll = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    return float((ll * m).sum() / max(m.sum(), 1))


def finetune(
    init: Baseline,
    data: SegmentSet,
    holdout_video: npt.NDArray[np.bool_],
    cfg: FinetuneConfig | None = None,
    *,
    seed: int = 0,
    progress: bool = True,
    name: str = "baseline",
) -> BaselineResult:
    """Fine-tune ``init`` on the rated segments: 90% with early stopping, then refit on all."""
    cfg = cfg or FinetuneConfig()
    t0 = time.perf_counter()
    train_rows, hold_rows = data.rows(~holdout_video), data.rows(holdout_video)
    if len(train_rows) == 0 or len(hold_rows) == 0:
        raise ValueError(f"{name}: the holdout split must leave rated segments on both sides")
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 17])
    model = copy.deepcopy(init)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    base = predict_segments(model, data, hold_rows)
    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_probs, bad = _holdout_loss(base, data, hold_rows), 0, base, 0
    bar = tqdm(range(1, cfg.max_epochs + 1), desc=f"{name} fine-tune", disable=not progress)
    for epoch in bar:
        tr = _epoch(model, data, train_rows, opt, cfg, rng)
        probs = predict_segments(model, data, hold_rows)
        hl = _holdout_loss(probs, data, hold_rows)
        history.append({"epoch": epoch, "train_loss": round(tr, 5), "holdout_loss": round(hl, 5)})
        bar.set_postfix(train=f"{tr:.4f}", holdout=f"{hl:.4f}")
        if hl < best_loss - 1e-5:
            best_loss, best_epoch, best_probs, bad = hl, epoch, probs, 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    bar.close()
    holdout_probs = np.full((len(data), init.num_classes), np.nan, np.float32)
    holdout_probs[hold_rows] = best_probs
    # refit from the same initialisation on every rated segment for the chosen number of epochs
    torch.manual_seed(seed)
    final = copy.deepcopy(init)
    all_rows = np.arange(len(data), dtype=np.int64)
    if best_epoch:
        opt = torch.optim.Adam(final.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        for _ in range(best_epoch):
            _epoch(final, data, all_rows, opt, cfg, rng)
    final.eval()
    return BaselineResult(final, best_epoch, holdout_probs, history, time.perf_counter() - t0)


def pretrain_convnet(
    model: ConvNet,
    cache: Any,
    *,
    epochs: int = 2,
    batch_size: int = 32,
    lr: float = 1e-3,
    max_frames: int = 150,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Train the ConvNet on the video labels of a ``training.data.FrameCache`` (``train/``).

    Videos longer than ``max_frames`` are cropped at a random offset (cheaper epochs; the convs and
    pooling are local). Returns the mean training loss of each epoch.
    """
    from training.data import LengthBucketSampler, VideoDataset, collate_padded

    torch.manual_seed(seed)
    ds = VideoDataset(cache, model.num_classes)
    sampler = LengthBucketSampler(ds.lengths.tolist(), batch_size, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng([seed, 23])
    losses = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        model.train()
        total, n = 0.0, 0
        for batch_idx in tqdm(
            list(sampler),
            desc=f"convnet pretrain {epoch + 1}/{epochs}",
            disable=not progress,
            leave=False,
        ):
            items = []
            for k in batch_idx:
                x, y = ds[k]
                if x.shape[0] > max_frames:
                    off = int(rng.integers(0, x.shape[0] - max_frames + 1))
                    x = x[off : off + max_frames]
                items.append((x, y))
            frames, lengths, targets = collate_padded(items)
            if frames.shape[1] < 3:
                frames = nn.functional.pad(frames, (0, 0, 0, 3 - frames.shape[1]))
            loss = bce_per_video(model(frames, lengths), targets)
            optimizer_step(model, opt, loss, GRAD_CLIP)
            total += float(loss.detach()) * len(items)
            n += len(items)
        losses.append(total / max(n, 1))
    model.eval()
    return losses


# --------------------------------------------------------------------------------------------
# ONNX export and inference
# --------------------------------------------------------------------------------------------


class _Graph(nn.Module):
    def __init__(self, model: Baseline) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor) -> Tensor:
        return self.model.graph(frames)


def export_baseline(model: Baseline, path: Path, *, check: bool = True) -> Path:
    """Write ``model`` as an ONNX graph ``frames [F, 1152] -> segment_probs [F // 5, C]``.

    With ``check`` the graph is compared with PyTorch at several frame counts (atol 1e-4).
    """
    graph = _Graph(model).eval()
    metadata = {
        "model": model.kind,
        "num_classes": str(model.num_classes),
        "input_format": INPUT_FORMAT,
    }
    names = BASELINE_OUTPUT_NAMES
    write_onnx(graph, path, outputs=names, per_segment=names, metadata=metadata)
    model.eval()
    if check:
        runner = BaselineRunner(path)

        @torch.no_grad()
        def torch_fn(x: F32) -> list[np.ndarray]:
            return [model.graph(torch.from_numpy(x)).numpy()]

        compare_with_torch(
            Path(path), lambda x: [runner(x)], torch_fn, names, frame_counts=(4, 5, 12, 123)
        )
    return Path(path)


class BaselineRunner:
    """Runs a ``baseline_{name}.onnx`` graph: frames float32 [F, 1152] -> segment_probs [S, C]."""

    def __init__(self, onnx_path: str | Path, *, threads: int = 1) -> None:
        self.path = Path(onnx_path)
        self.session = candidate.open_session(
            self.path, threads=threads, outputs=BASELINE_OUTPUT_NAMES
        )

    def __call__(self, frames: F32) -> F32:
        """frames float32 [F, 1152] -> float32 [F // 5, C] (``service.candidate.run_baseline``)."""
        return candidate.run_baseline(self.session, frames)


def baseline_from_candidate(lstm: LstmModel) -> SegmentLstm:
    """The LSTM baseline's initialisation: the trained candidate LSTM."""
    return SegmentLstm(lstm)


def convnet_like(lstm: LstmModel, **kwargs: Any) -> ConvNet:
    """A fresh ConvNet sharing the candidate's input standardization statistics."""
    net = ConvNet(int(lstm.cfg.num_classes), **kwargs)
    net.norm.load_state_dict(lstm.norm.state_dict())
    return net
