"""Video-level candidate generators (paper section 3.1, Table 1): models, training, Python API.

Three generators over the video vocabulary, trained with binary cross-entropy on the video-level
labels of ``train/``:

- ``logistic``: a linear layer with a sigmoid on the video's mean frame (the YouTube-8M starter
  model). Its segment embedding is the segment's mean dequantized frame, D = 1152.
- ``lstm``: the paper's model: stacked bidirectional LSTM layers, then a unidirectional LSTM, then a
  linear layer with a sigmoid. The ``paper`` preset reads the last hidden state (1024 cells, two
  bidirectional layers); the ``small`` preset reads the mean hidden state over time and projects
  the frames to 64 dimensions first (with ~1000 training videos the last-state LSTM did not learn
  within minutes: its loss stayed at the label prior). Its segment embedding is the mean hidden
  state of the unidirectional LSTM over the segment's 5 frames (segment fed alone), D = hidden.
- ``ensemble``: the average of both models' probabilities; its embeddings are the LSTM's.

The logistic model is trained full-batch on precomputed mean frames with a strong L2 penalty (on the
default synthetic corpus this lifted Recall@(1/20 of the videos) from 0.41 to 0.69).

Every model exposes the same two entry points:

- ``forward(frames [B, T, 1152] float32, lengths [B] int64) -> logits [B, C]`` for training on
  padded batches (the trailing padding never influences a video's output);
- ``graph_outputs(frames [F, 1152]) -> (video_probs [C], segment_probs [S, C],
  segment_embeddings [S, D])`` with S = F // 5, the body of the exported ONNX graph
  (see :mod:`training.export`). A segment's outputs come from the model applied to its 5 frames
  alone; a trailing partial segment is ignored by the segment outputs but seen by the video pass.

The training API (:func:`train_candidates`, :func:`run_train_candidates`) and the batch inference
helper (:func:`score_videos_onnx`) are at the bottom of this module.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from tqdm.auto import tqdm

from service.yt8m import FEATURE_DIM, SEGMENT_FRAMES, Video

ModelKind = Literal["logistic", "lstm", "ensemble"]
MODEL_KINDS: tuple[str, ...] = ("logistic", "lstm", "ensemble")
PRESET_NAMES: tuple[str, ...] = ("small", "paper")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and training settings of one generator (``logistic`` or ``lstm``).

    A checkpoint stores this as a dict, so a model can be rebuilt from its checkpoint alone.
    """

    model: str
    preset: str
    num_classes: int
    hidden: int = 128
    bi_layers: int = 1
    pool: str = "last"
    proj: int = 0
    input_dropout: float = 0.2
    epochs: int = 6
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 2
    grad_clip: float = 5.0
    val_fraction: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ModelConfig:
        known = {f for f in ModelConfig.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model config: unknown field(s) {sorted(unknown)}")
        return ModelConfig(**d)


#: Preset -> model -> overrides of :class:`ModelConfig`. ``small`` trains in minutes on 2 cores;
#: ``paper`` is the paper's size (1024 cells, two bidirectional layers).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "small": {
        "lstm": {
            "hidden": 64,
            "bi_layers": 1,
            "proj": 64,
            "pool": "mean",
            # lr 1e-2 without dropout reached Recall@15 0.36 on the default synthetic corpus;
            # lr 3e-3, input dropout 0.3 and a prior-initialised output bias reach 0.65.
            "input_dropout": 0.3,
            "epochs": 15,
            "patience": 4,
            "lr": 3e-3,
            "batch_size": 32,
        },
        "logistic": {
            "epochs": 150,
            "lr": 1e-2,
            "batch_size": 4096,
            "weight_decay": 0.5,
            "input_dropout": 0.0,
            "patience": 20,
        },
    },
    "paper": {
        "lstm": {"hidden": 1024, "bi_layers": 2, "epochs": 10, "lr": 5e-4, "batch_size": 64},
        "logistic": {
            "epochs": 300,
            "lr": 1e-2,
            "batch_size": 4096,
            "weight_decay": 0.5,
            "input_dropout": 0.0,
            "patience": 30,
        },
    },
}


def model_config(
    model: str,
    preset: str,
    num_classes: int,
    *,
    epochs: int | None = None,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
) -> ModelConfig:
    """The configuration of ``model`` (``logistic`` or ``lstm``) at ``preset``.

    ``overrides`` replaces fields of :class:`ModelConfig` (e.g. ``{"hidden": 16}`` for tests);
    an unknown field raises ``ValueError``.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (expected one of {sorted(PRESETS)})")
    if model not in PRESETS[preset]:
        raise ValueError(f"unknown model {model!r} (expected 'logistic' or 'lstm')")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    cfg = ModelConfig(model=model, preset=preset, num_classes=num_classes, seed=seed)
    cfg = replace(cfg, **PRESETS[preset][model])
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        cfg = replace(cfg, epochs=epochs)
    if overrides:
        fixed = {"model", "preset", "num_classes", "seed"}
        bad = sorted(set(overrides) - (set(ModelConfig.__dataclass_fields__) - fixed))
        if bad:
            raise ValueError(f"cannot override {bad} of the {model} config")
        cfg = replace(cfg, **overrides)
    return cfg


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

CHECKPOINT_FORMAT = "ccrl-candidate-checkpoint-v1"


@dataclass
class TrainOutcome:
    """A trained generator and how it got there."""

    model: LogisticModel | LstmModel
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    train_seconds: float
    videos_per_second: float
    checkpoint: Path


def _bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy summed over classes, averaged over videos."""
    return nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / max(
        len(targets), 1
    )


def split_train_val(
    num_videos: int, val_fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Held-out split by video: (train indices, validation indices), both sorted."""
    if num_videos < 2:
        raise ValueError(f"need at least 2 training videos for a held-out split, got {num_videos}")
    n_val = min(max(1, round(num_videos * val_fraction)), num_videos - 1)
    perm = np.random.default_rng([seed, 7919]).permutation(num_videos)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint dict; raises ``ValueError`` naming the file when it is not a checkpoint."""
    try:
        ckpt: dict[str, Any] = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a candidate checkpoint (format != {CHECKPOINT_FORMAT})")
    return ckpt


def model_from_checkpoint(path: Path, *, best: bool = True) -> LogisticModel | LstmModel:
    """Rebuild a model from its checkpoint alone (its config travels with it); eval mode."""
    ckpt = load_checkpoint(path)
    model = build_model(ModelConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["best_state"] if best else ckpt["state"])
    return model.eval()


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _fit_normalizer(model: LogisticModel | LstmModel, cache: Any, train_idx: np.ndarray) -> None:
    if isinstance(model, LogisticModel):
        pooled = cache.mean_frames()[train_idx]
        model.norm.fit(pooled.mean(0), pooled.std(0))
    else:
        mean, std = cache.frame_stats(seed=model.cfg.seed)
        model.norm.fit(mean, std)


def _init_head_bias(model: LogisticModel | LstmModel, targets: Tensor) -> None:
    """Start the output bias at logit(label prior) of the training videos (LSTM only).

    With 100 sparse classes a zero bias starts every class at p = 0.5; the LSTM then spends its
    first epochs (at a high learning rate) pushing all logits down instead of learning features.
    """
    if not isinstance(model, LstmModel):
        return
    prior = targets.float().mean(0).clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        model.head.bias.copy_(torch.logit(prior))


def train_model(
    cfg: ModelConfig,
    cache: Any,
    ckpt_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    """Train one generator on a :class:`training.data.FrameCache` of ``train/``.

    Holds out ``cfg.val_fraction`` of the videos (by video, seeded) for early stopping on the
    validation loss (``cfg.patience`` epochs without improvement). Writes ``ckpt_dir/last.pt`` after
    every epoch (model, optimizer, best weights, history, config); with ``resume`` an existing
    checkpoint of the same config continues where it stopped (a finished one is returned as is).
    """
    from training.data import LengthBucketSampler, VideoDataset, collate_padded

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = ckpt_dir / "last.pt"
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    train_idx, val_idx = split_train_val(len(cache), cfg.val_fraction, cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, float]] = []
    start_epoch, best_val, best_epoch, bad = 0, math.inf, -1, 0
    best_state: dict[str, Tensor] | None = None
    elapsed, seen = 0.0, 0
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        old = ModelConfig.from_dict(ckpt["config"])
        diff = [k for k, v in cfg.to_dict().items() if k != "epochs" and old.to_dict()[k] != v]
        if diff:
            raise ValueError(
                f"{ckpt_path}: cannot resume, the config differs in {diff} "
                f"(checkpoint {[old.to_dict()[k] for k in diff]}, "
                f"now {[getattr(cfg, k) for k in diff]})"
            )
        model.load_state_dict(ckpt["state"])
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
        best_val, best_epoch = float(ckpt["best_val"]), int(ckpt["best_epoch"])
        bad = int(ckpt["bad"])
        best_state = ckpt["best_state"]
        elapsed, seen = float(ckpt["elapsed"]), int(ckpt["seen"])
        if ckpt.get("stopped") and cfg.epochs <= int(ckpt["config"]["epochs"]):
            start_epoch = cfg.epochs
    targets = torch.from_numpy(cache.label_matrix(cfg.num_classes))
    if not (resume and ckpt_path.exists()):
        _fit_normalizer(model, cache, train_idx)
        _init_head_bias(model, targets[torch.from_numpy(train_idx)])
    pooled: Tensor | None = None
    if isinstance(model, LogisticModel):
        pooled = torch.from_numpy(cache.mean_frames())
        loader: Any = None
        sampler: Any = None
    else:
        train_ds = VideoDataset(cache, cfg.num_classes, train_idx)
        sampler = LengthBucketSampler(train_ds.lengths, cfg.batch_size, seed=cfg.seed)
        loader = torch.utils.data.DataLoader(
            train_ds, batch_sampler=sampler, collate_fn=collate_padded, num_workers=0
        )
        val_ds = VideoDataset(cache, cfg.num_classes, val_idx)
        val_loader = torch.utils.data.DataLoader(
            val_ds,
            batch_sampler=LengthBucketSampler(val_ds.lengths, 64, seed=0, bucket_batches=10**6),
            collate_fn=collate_padded,
        )

    def validate() -> float:
        model.eval()
        total = 0.0
        with torch.no_grad():
            if pooled is not None:
                total = float(_bce(model.forward_pooled(pooled[val_idx]), targets[val_idx]))  # type: ignore[union-attr,operator]
                return total
            for frames, lengths, y in val_loader:
                total += float(_bce(model(frames, lengths), y)) * len(y)
        return total / max(len(val_idx), 1)

    stopped = False
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout per epoch: resume is exact
        t0 = time.perf_counter()
        run_loss, run_n = 0.0, 0
        if pooled is not None:
            g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=g)]
            batches: Iterable[Any] = order.split(cfg.batch_size)
            total = -(-len(train_idx) // cfg.batch_size)
        else:
            sampler.set_epoch(epoch)
            batches = loader
            total = len(sampler)
        bar = tqdm(
            batches,
            total=total,
            desc=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
        )
        for batch in bar:
            if pooled is not None:
                logits, y = model.forward_pooled(pooled[batch]), targets[batch]  # type: ignore[union-attr,operator]
            else:
                frames, lengths, y = batch
                logits = model(frames, lengths)
            loss = _bce(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            run_loss += loss.item() * len(y)
            run_n += len(y)
            bar.set_postfix(loss=f"{run_loss / run_n:.3f}")
        seconds = time.perf_counter() - t0
        elapsed += seconds
        seen += run_n
        val_loss = validate()
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": run_loss / max(run_n, 1),
                "val_loss": val_loss,
                "seconds": seconds,
            }
        )
        if val_loss < best_val - 1e-6:
            best_val, best_epoch, bad = val_loss, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        stopped = bad >= cfg.patience
        quiet = pooled is not None and (epoch + 1) % 10 and not stopped and epoch + 1 < cfg.epochs
        if progress and not quiet:
            tqdm.write(
                f"{cfg.model} epoch {epoch + 1}: train loss {history[-1]['train_loss']:.4f}, "
                f"val loss {val_loss:.4f}, {run_n / max(seconds, 1e-9):.1f} videos/s"
                + (" (early stop)" if stopped else "")
            )
        _save_checkpoint(
            ckpt_path,
            {
                "format": CHECKPOINT_FORMAT,
                "config": cfg.to_dict(),
                "state": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch + 1,
                "history": history,
                "best_val": best_val,
                "best_epoch": best_epoch,
                "bad": bad,
                "best_state": best_state,
                "elapsed": elapsed,
                "seen": seen,
                "stopped": stopped,
            },
        )
        if stopped:
            break
    if best_state is None:  # zero epochs requested: keep the fresh weights
        best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return TrainOutcome(
        model=model,
        history=history,
        best_epoch=best_epoch,
        best_val_loss=best_val,
        train_seconds=elapsed,
        videos_per_second=seen / elapsed if elapsed > 0 else 0.0,
        checkpoint=ckpt_path,
    )


# --------------------------------------------------------------------------------------------
# Inference with ONNX Runtime
# --------------------------------------------------------------------------------------------


def onnx_session(onnx_path: Path, *, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (inter-op 1)."""
    import onnxruntime as ort

    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX graph {path} does not exist")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def score_videos_onnx(
    onnx_path: Path,
    videos: Iterable[Video],
    *,
    threads: int = 1,
    progress: bool = False,
    total: int | None = None,
) -> tuple[list[str], npt.NDArray[np.float32], list[np.ndarray], list[np.ndarray]]:
    """Run ``candidate.onnx`` on every video (one call per video).

    Returns (video ids [V], video_probs float32 [V, C], per-video segment_probs float32 [S_v, C],
    per-video segment_embeddings float32 [S_v, D]). A video with no frame gets zero probabilities
    and no segments.
    """
    from training.export import INPUT_NAME, OUTPUT_NAMES

    sess = onnx_session(onnx_path, threads=threads)
    meta = sess.get_modelmeta().custom_metadata_map
    num_classes = int(meta.get("num_classes", "0"))
    emb_dim = int(meta.get("embedding_dim", "0"))
    ids: list[str] = []
    probs: list[np.ndarray] = []
    seg_probs: list[np.ndarray] = []
    embs: list[np.ndarray] = []
    for v in tqdm(videos, total=total, desc="candidate graph", disable=not progress, leave=False):
        ids.append(v.id)
        if v.num_frames == 0:
            probs.append(np.zeros(num_classes, np.float32))
            seg_probs.append(np.zeros((0, num_classes), np.float32))
            embs.append(np.zeros((0, emb_dim), np.float32))
            continue
        vp, sp, se = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: v.features()})
        probs.append(vp)
        seg_probs.append(sp)
        embs.append(se)
    matrix = np.stack(probs).astype(np.float32) if probs else np.zeros((0, num_classes), np.float32)
    return ids, matrix, seg_probs, embs


# --------------------------------------------------------------------------------------------
# The train-candidates API
# --------------------------------------------------------------------------------------------


@dataclass
class CandidateResult:
    """What :func:`train_candidates` produced.

    Attributes:
        onnx_path: the chosen generator's graph, ``OUT/candidate.onnx``.
        onnx_paths: generator name -> its graph (for ``ensemble``: logistic, lstm, ensemble).
        model: the chosen generator's name.
        k: the chosen K (videos kept per class).
        report: the report dict (see :mod:`training.candidate_report`).
        report_paths: ``json``, ``markdown``, ``plot`` -> file.
        checkpoints: trained model name -> its checkpoint.
        num_classes: C, the vocabulary size.
    """

    onnx_path: Path
    onnx_paths: dict[str, Path]
    model: str
    k: int
    report: dict[str, Any]
    report_paths: dict[str, Path]
    checkpoints: dict[str, Path] = field(default_factory=dict)
    num_classes: int = 0


def vocabulary_size(data_dir: Path) -> int | None:
    """max Index + 1 of ``DATA/vocabulary.csv``, or None when the file is absent."""
    import csv

    path = Path(data_dir) / "vocabulary.csv"
    if not path.is_file():
        return None
    top = -1
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "Index" not in reader.fieldnames:
            raise ValueError(f"{path}: no 'Index' column in the header {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                top = max(top, int(row["Index"]))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}:{line}: bad Index {row['Index']!r}") from e
    return top + 1 if top >= 0 else None


def rated_split(data_dir: Path) -> Path:
    """``DATA/test`` when present, else ``DATA/validate``; raises naming DATA if neither exists."""
    for name in ("test", "validate"):
        p = Path(data_dir) / name
        if p.is_dir():
            return p
    raise FileNotFoundError(f"{data_dir} has no rated split (test/ or validate/)")


def _class_names(data_dir: Path) -> dict[int, str]:
    try:
        from service.vocab import read_vocabulary

        path = Path(data_dir) / "vocabulary.csv"
        return dict(read_vocabulary(path).names) if path.is_file() else {}
    except Exception:  # the names are decoration of the report only
        return {}


def _choose(report: dict[str, Any], names: Sequence[str]) -> str:
    """The generator with the best average recall at K (ties: later in ``names`` wins)."""
    gens = report["generators"]
    best = names[0]
    for n in names[1:]:
        if gens[n]["average_recall_at_k"] >= gens[best]["average_recall_at_k"] - 1e-12:
            best = n
    return best


def train_candidates(
    data_dir: Path,
    out_dir: Path,
    *,
    model: str = "lstm",
    preset: str = "small",
    epochs: int | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    threads: int | None = None,
    cache_root: Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> CandidateResult:
    """Train the candidate generator(s) on ``DATA/train``, export ONNX, report Recall@K.

    ``model`` is ``logistic``, ``lstm`` or ``ensemble`` (trains both, writes
    ``OUT/{logistic,lstm,ensemble}/candidate.onnx`` and copies the best one to
    ``OUT/candidate.onnx``); a single model writes ``OUT/candidate.onnx``. Checkpoints go to
    ``OUT/checkpoints/{model}/last.pt``; the report (evaluated on ``DATA/test``, else
    ``DATA/validate``) to ``OUT/report/``. ``threads`` (torch and ONNX Runtime) defaults to 1: on a
    shared 2-core machine two 2-thread torch processes slowed LSTM epochs from 6 s to 180-270 s.
    The split caches go to ``cache_root`` (default: ``DATA/.cache``, see
    :func:`training.data.load_split`).
    ``overrides`` maps ``logistic`` / ``lstm`` to :class:`ModelConfig` fields to replace.
    """
    from training.candidate_report import build_report, ratings_from_csr, write_report
    from training.data import load_split
    from training.export import check_graph, export_onnx

    if model not in MODEL_KINDS:
        raise ValueError(f"unknown model {model!r} (expected one of {MODEL_KINDS})")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (expected one of {sorted(PRESETS)})")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not (data_dir / "train").is_dir():
        raise FileNotFoundError(f"{data_dir} has no train/ folder")
    rated_dir = rated_split(data_dir)
    n_threads = threads or 1
    torch.set_num_threads(n_threads)
    out_dir.mkdir(parents=True, exist_ok=True)

    train_cache = load_split(data_dir / "train", cache_root=cache_root, progress=progress)
    rated_cache = load_split(rated_dir, cache_root=cache_root, progress=progress)
    if len(train_cache) < 2:
        raise ValueError(f"{data_dir / 'train'}: need at least 2 videos, found {len(train_cache)}")
    seen_max = max(train_cache.max_label(), rated_cache.max_label())
    vocab = vocabulary_size(data_dir)
    num_classes = vocab if vocab is not None else seen_max + 1
    if seen_max >= num_classes:
        raise ValueError(
            f"{data_dir / 'vocabulary.csv'}: {num_classes} classes "
            f"but the data uses class {seen_max}"
        )

    members = ["logistic", "lstm"] if model == "ensemble" else [model]
    trained: dict[str, TrainOutcome] = {}
    for name in members:
        cfg = model_config(
            name,
            preset,
            num_classes,
            epochs=epochs,
            seed=seed,
            overrides=(overrides or {}).get(name),
        )
        trained[name] = train_model(
            cfg, train_cache, out_dir / "checkpoints" / name, resume=resume, progress=progress
        )
    modules: dict[str, nn.Module] = {n: o.model for n, o in trained.items()}
    if model == "ensemble":
        modules["ensemble"] = EnsembleModel(trained["logistic"].model, trained["lstm"].model)  # type: ignore[arg-type]

    onnx_paths: dict[str, Path] = {}
    for name, module in modules.items():
        sub = out_dir / name if model == "ensemble" else out_dir
        path = sub / "candidate.onnx"
        export_onnx(module, path, extra_metadata={"seed": str(seed)})
        check_graph(module, path, frame_counts=(4, 5, 12, 123), atol=1e-4)
        onnx_paths[name] = path

    num_segments = rated_cache.lengths // 5
    video_ids = [str(x) for x in rated_cache.ids]
    ratings = ratings_from_csr(
        video_ids,
        rated_cache.seg_offsets,
        rated_cache.seg_labels,
        rated_cache.seg_starts,
        rated_cache.seg_scores,
    )
    generators: dict[str, np.ndarray] = {}
    for name, path in onnx_paths.items():
        _, probs, _, _ = score_videos_onnx(
            path, rated_cache.videos(), threads=n_threads, progress=progress, total=len(rated_cache)
        )
        generators[name] = probs
    extra: dict[str, dict[str, Any]] = {}
    for name in onnx_paths:
        parts = members if name == "ensemble" else [name]
        extra[name] = {
            "train_seconds": sum(trained[p].train_seconds for p in parts),
            "epochs": "+".join(str(len(trained[p].history)) for p in parts),
            "best_epoch": "+".join(str(trained[p].best_epoch) for p in parts),
            "val_loss": min(trained[p].best_val_loss for p in parts),
            "train_videos_per_second": min(trained[p].videos_per_second for p in parts),
            "onnx": str(onnx_paths[name].relative_to(out_dir)),
        }
    report = build_report(
        generators,
        video_ids,
        num_segments,
        ratings,
        split=rated_dir.name,
        class_names=_class_names(data_dir),
        extra=extra,
    )
    chosen = _choose(report, list(onnx_paths))
    report.update(
        {
            "chosen": chosen,
            "num_classes": num_classes,
            "preset": preset,
            "seed": seed,
            "train_videos": len(train_cache),
            "configs": {n: o.model.cfg.to_dict() for n, o in trained.items()},
        }
    )
    report_paths = write_report(report, out_dir / "report")
    final = out_dir / "candidate.onnx"
    if onnx_paths[chosen] != final:
        tmp = final.with_suffix(".onnx.tmp")
        tmp.write_bytes(onnx_paths[chosen].read_bytes())
        tmp.replace(final)
    return CandidateResult(
        onnx_path=final,
        onnx_paths=onnx_paths,
        model=chosen,
        k=int(report["k"]),
        report=report,
        report_paths=report_paths,
        checkpoints={n: o.checkpoint for n, o in trained.items()},
        num_classes=num_classes,
    )


def run_train_candidates(
    data: Path,
    out: Path,
    *,
    model: str = "lstm",
    preset: str = "small",
    epochs: int | None = None,
    seed: int = 0,
    resume: bool = False,
) -> CandidateResult:
    """The ``ccrl train-candidates`` command: train, export, report, print the recall table."""
    from training.candidate_report import format_table

    t0 = time.perf_counter()
    result = train_candidates(
        data, out, model=model, preset=preset, epochs=epochs, seed=seed, resume=resume
    )
    print(format_table(result.report))
    print(f"chosen generator: {result.model} -> {result.onnx_path}")
    for kind, path in result.report_paths.items():
        print(f"report ({kind}): {path}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    summary = {n: g["average_recall_at_k"] for n, g in result.report["generators"].items()}
    print(json.dumps({"k": result.k, "recall_at_k": summary}))
    return result
