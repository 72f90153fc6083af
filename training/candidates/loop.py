"""The candidate training loop: one generator trained on the video labels of ``train/``.

Read top to bottom: :func:`train_model` seeds and builds the model, splits off validation videos,
resumes from a checkpoint (:mod:`training.candidates.checkpoint`) or fits the input statistics,
then runs epochs (:func:`_train_epoch`, :func:`_end_epoch`) with early stopping, writing a
checkpoint after each. The only difference between the two generators is how batches are fed,
chosen once by :func:`_feed`:

- logistic (:class:`_PooledFeed`): shuffled batches of precomputed mean frames, trained with a
  strong L2 penalty (on the default synthetic corpus this lifted Recall@(1/20 of the videos) from
  0.41 to 0.69);
- LSTM (:class:`_PaddedFeed`): length-bucketed padded batches of frames, and an output bias that
  starts at logit(label prior); with ``cfg.warm_start`` its logistic path is the trained logistic
  generator (frozen) and the untrained model, which is that logistic model, is epoch 0 of the
  best-epoch selection.

The best epoch is the lowest validation loss, or (``cfg.select == "map"``) the highest
validation mAP of ranking the videos per class (:func:`video_map`): the loss also rewards
calibration, and the heavily weight-decayed logistic model ranks better than its loss says.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from training.candidates.checkpoint import CHECKPOINT_NAME, LoopState, resume_from, save_checkpoint
from training.candidates.config import ModelConfig
from training.candidates.models import LogisticModel, LstmModel, build_model

#: An epoch's batches (as the feed's ``forward`` takes them) and how many there are.
Batches = tuple[Iterable[Any], int]


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


def bce_per_video(logits: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy summed over classes, averaged over videos ([B, C] each)."""
    return nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / max(
        len(targets), 1
    )


def video_map(logits: Tensor, targets: Tensor) -> float:
    """Mean over classes with a positive of the average precision of ranking the videos by a
    class's logit ([V, C] each): how well a generator orders the videos per class, which is what
    candidate generation keeps (the loss also rewards calibration, which the top-K does not)."""
    order = torch.argsort(logits, dim=0, descending=True, stable=True)
    hits = torch.gather(targets.float() > 0.5, 0, order).float()
    npos = hits.sum(0)
    ranks = torch.arange(1, len(hits) + 1, dtype=torch.float32)[:, None]
    ap = (hits * hits.cumsum(0) / ranks).sum(0) / npos.clamp_min(1)
    keep = npos > 0
    return float(ap[keep].mean()) if bool(keep.any()) else 0.0


def optimizer_step(
    model: nn.Module, opt: torch.optim.Optimizer, loss: Tensor, grad_clip: float
) -> None:
    """Backpropagate ``loss`` and step ``opt``; clip the gradient norm at ``grad_clip`` if > 0."""
    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()


WARMUP = 0.15
"""Share of the steps of the ``onecycle`` schedule spent warming up."""


def lr_at(cfg: ModelConfig, done: float) -> float:
    """The learning rate after ``done`` (0..1) of all training steps.

    ``constant``: ``cfg.lr``. ``onecycle``: a linear warm-up from ``lr / 25`` to ``lr`` over the
    first :data:`WARMUP` of the steps, then a cosine decay towards 0. A pure function of the step,
    so a resumed run follows the same schedule without saving a scheduler (a run resumed with more
    epochs than it started with follows the longer schedule from there on).
    """
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule != "onecycle":
        raise ValueError(f"unknown schedule {cfg.schedule!r} (expected constant or onecycle)")
    if done < WARMUP:
        return cfg.lr * (0.04 + 0.96 * done / WARMUP)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (done - WARMUP) / (1 - WARMUP))))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in opt.param_groups:
        group["lr"] = lr


def split_train_val(
    num_videos: int, val_fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Held-out split by video: (train indices, validation indices), both sorted."""
    if num_videos < 2:
        raise ValueError(f"need at least 2 training videos for a held-out split, got {num_videos}")
    n_val = min(max(1, round(num_videos * val_fraction)), num_videos - 1)
    perm = np.random.default_rng([seed, 7919]).permutation(num_videos)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# --------------------------------------------------------------------------------------------
# Feeding the two generators
# --------------------------------------------------------------------------------------------


class _PooledFeed:
    """The logistic model's batches: rows of the videos' mean frames float32 [V, 1152]."""

    log_every = 10  # full-batch epochs are many and fast: log every 10th

    def __init__(
        self, model: LogisticModel, cache: Any, targets: Tensor, train_idx: Any, val_idx: Any
    ) -> None:
        self.model, self.targets = model, targets
        self.train_idx, self.val_idx = train_idx, val_idx
        self.mean_frames = cache.mean_frames()
        self.pooled = torch.from_numpy(self.mean_frames)

    def prepare(self) -> None:
        """Fit the input standardization on the training videos' mean frames."""
        train = self.mean_frames[self.train_idx]
        self.model.norm.fit(train.mean(0), train.std(0))

    def batches(self, epoch: int) -> Batches:
        """The epoch's batches (index tensors of a seeded shuffle) and their count."""
        cfg = self.model.cfg
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.from_numpy(self.train_idx)[torch.randperm(len(self.train_idx), generator=g)]
        return order.split(cfg.batch_size), -(-len(self.train_idx) // cfg.batch_size)

    def forward(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [B, C], targets [B, C]) of one batch of video indices."""
        return self.model.forward_pooled(self.pooled[batch]), self.targets[batch]

    def validate(self) -> tuple[float, float]:
        """(mean loss, :func:`video_map`) of the validation videos (one batch)."""
        logits = self.model.forward_pooled(self.pooled[self.val_idx])
        y = self.targets[self.val_idx]
        return float(bce_per_video(logits, y)), video_map(logits, y)


MAX_CALIBRATION_SCALE = 50.0
"""The largest per-class scale :meth:`_PaddedFeed.calibrate` gives the logistic path's logits
(fitted: 2 to 17 on the synthetic corpora; a logistic model stopped after an epoch or two has
near-zero logits, which an unbounded scale would blow up into saturated probabilities)."""


class _PaddedFeed:
    """The LSTM's batches: padded frames of similar length (:class:`training.data.VideoDataset`)."""

    log_every = 1

    def __init__(
        self, model: LstmModel, cache: Any, targets: Tensor, train_idx: Any, val_idx: Any
    ) -> None:
        from training.data import LengthBucketSampler, VideoDataset, collate_padded

        cfg = model.cfg
        self.model, self.cache, self.targets = model, cache, targets
        self.train_idx, self.val_idx = train_idx, val_idx
        train_ds = VideoDataset(cache, cfg.num_classes, train_idx)
        self.sampler = LengthBucketSampler(train_ds.lengths, cfg.batch_size, seed=cfg.seed)
        self.loader = torch.utils.data.DataLoader(
            train_ds, batch_sampler=self.sampler, collate_fn=collate_padded, num_workers=0
        )
        val_ds = VideoDataset(cache, cfg.num_classes, val_idx)
        self.val_loader = torch.utils.data.DataLoader(
            val_ds,
            batch_sampler=LengthBucketSampler(val_ds.lengths, 64, seed=0, bucket_batches=10**6),
            collate_fn=collate_padded,
        )

    def prepare(self) -> None:
        """Fit the input standardization on sampled frames; start the output bias at the prior.

        With 100 sparse classes a zero bias starts every class at p = 0.5; the LSTM then spends
        its first epochs (at a high learning rate) pushing all logits down instead of learning
        features.
        """
        model = self.model
        mean, std = self.cache.frame_stats(seed=model.cfg.seed)
        model.norm.fit(mean, std)
        prior = self.targets[torch.from_numpy(self.train_idx)].float().mean(0)
        bias = model.linear.bias if model.cfg.linear else model.head.bias
        with torch.no_grad():
            bias.copy_(torch.logit(prior.clamp(1e-4, 1 - 1e-4)))
        if model.cfg.linear:
            train = self.cache.mean_frames()[self.train_idx]
            model.lin_norm.fit(train.mean(0), train.std(0))

    def warm_start(self, logistic: LogisticModel) -> None:
        """Start the logistic path as the trained logistic generator ``logistic`` (its input
        statistics and weights): with the recurrent branch at zero, the model starts as it."""
        with torch.no_grad():
            self.model.lin_norm.load_state_dict(logistic.norm.state_dict())
            self.model.linear.load_state_dict(logistic.head.state_dict())

    def calibrate(self, steps: int = 300) -> None:
        """Fit a per-class increasing map ``s_c z + b_c`` of the logistic path's logits ``z``
        (``linear_scale`` and the recurrent head's bias) on the training videos' mean frames.

        The ranking of the videos per class, so the recall and the mAP, stays the logistic
        model's; the residual then starts from calibrated probabilities instead of learning the
        calibration of a heavily weight-decayed model (default corpus: validation loss 40.8
        where one LSTM epoch reaches 7) with the recurrent branch.
        """
        model = self.model
        train = torch.from_numpy(self.train_idx)
        x = torch.from_numpy(self.cache.mean_frames()[self.train_idx])
        y = self.targets[train].float()
        with torch.no_grad():
            z = model.linear(model.lin_norm(x))
        log_scale = torch.zeros(z.shape[1], requires_grad=True)
        shift = torch.zeros(z.shape[1], requires_grad=True)
        opt = torch.optim.Adam([log_scale, shift], lr=0.05)
        cap = math.log(MAX_CALIBRATION_SCALE)
        for _ in range(steps):
            scale = log_scale.clamp(-cap, cap).exp()
            optimizer_step(model, opt, bce_per_video(z * scale + shift, y), 0.0)
        with torch.no_grad():
            model.linear_scale.copy_(log_scale.clamp(-cap, cap).exp())
            model.head.bias.copy_(shift)

    def batches(self, epoch: int) -> Batches:
        """The epoch's length-bucketed batches (the loader) and their count."""
        self.sampler.set_epoch(epoch)
        return self.loader, len(self.sampler)

    def forward(self, batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """(logits [B, C], targets [B, C]) of one padded batch (frames, lengths, targets)."""
        frames, lengths, y = batch
        return self.model(frames, lengths), y

    def validate(self) -> tuple[float, float]:
        """(mean loss, :func:`video_map`) of the validation videos (batches of 64)."""
        logits, ys = [], []
        for frames, lengths, y in self.val_loader:
            logits.append(self.model(frames, lengths))
            ys.append(y)
        out, y = torch.cat(logits), torch.cat(ys)
        return float(bce_per_video(out, y)), video_map(out, y)


def _feed(
    model: LogisticModel | LstmModel, cache: Any, targets: Tensor, train_idx: Any, val_idx: Any
) -> _PooledFeed | _PaddedFeed:
    """The one place where the logistic and LSTM generators part ways."""
    if isinstance(model, LogisticModel):
        return _PooledFeed(model, cache, targets, train_idx, val_idx)
    return _PaddedFeed(model, cache, targets, train_idx, val_idx)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def _train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    feed: _PooledFeed | _PaddedFeed,
    cfg: ModelConfig,
    epoch: int,
    progress: bool,
) -> tuple[float, int, float]:
    """One pass over the training batches: (summed loss, videos, seconds)."""
    model.train()
    torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout per epoch: resume is exact
    t0 = time.perf_counter()
    run_loss, run_n = 0.0, 0
    batches, total = feed.batches(epoch)
    desc = f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}"
    # tqdm wraps the loader itself (``tqdm.auto`` opens one extra loader iterator, which draws
    # from the torch RNG; wrapping anything else would change the dropout masks of every run)
    bar = tqdm(batches, total=total, desc=desc, disable=not progress, leave=False)
    for step, batch in enumerate(bar):
        set_lr(opt, lr_at(cfg, (epoch * total + step) / max(cfg.epochs * total, 1)))
        logits, y = feed.forward(batch)
        loss = bce_per_video(logits, y)
        optimizer_step(model, opt, loss, cfg.grad_clip)
        run_loss += loss.item() * len(y)
        run_n += len(y)
        bar.set_postfix(loss=f"{run_loss / run_n:.3f}")
    return run_loss, run_n, time.perf_counter() - t0


def _criterion(cfg: ModelConfig, val_loss: float, val_map: float) -> float:
    """What the best epoch minimises: the validation loss, or minus the validation mAP
    (``cfg.select == "map"``)."""
    if cfg.select == "loss":
        return val_loss
    if cfg.select == "map":
        return -val_map
    raise ValueError(f"unknown select {cfg.select!r} (expected loss or map)")


def _end_epoch(
    model: nn.Module,
    feed: _PooledFeed | _PaddedFeed,
    state: LoopState,
    cfg: ModelConfig,
    epoch: int,
    trained: tuple[float, int, float],
    progress: bool,
) -> None:
    """Validate, record the epoch in ``state`` (best weights, early stopping) and log it."""
    run_loss, run_n, seconds = trained
    state.elapsed += seconds
    state.seen += run_n
    model.eval()
    with torch.no_grad():
        val_loss, val_map = feed.validate()
    train_loss = run_loss / max(run_n, 1)
    state.history.append(
        {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_map": val_map,
            "seconds": seconds,
        }
    )
    score = _criterion(cfg, val_loss, val_map)
    if score < state.best_val - 1e-6:
        state.best_val, state.best_epoch, state.bad = score, epoch + 1, 0
        state.best_state = copy.deepcopy(model.state_dict())
    else:
        state.bad += 1
    state.stopped = state.bad >= cfg.patience
    state.epoch = epoch + 1
    last = state.stopped or epoch + 1 >= cfg.epochs
    if progress and ((epoch + 1) % feed.log_every == 0 or last):
        tqdm.write(
            f"{cfg.model} epoch {epoch + 1}: train loss {train_loss:.4f}, "
            f"val loss {val_loss:.4f}, val mAP {val_map:.4f}, "
            f"{run_n / max(seconds, 1e-9):.1f} videos/s"
            + (" (early stop)" if state.stopped else "")
        )


def _optimizer(model: LogisticModel | LstmModel, cfg: ModelConfig) -> torch.optim.Adam:
    """Adam with ``cfg.weight_decay``. A warm-started LSTM's logistic path (``cfg.warm_start``)
    is frozen: the trained logistic generator stays as it is (only its per-class scale of the
    logits trains), the recurrent branch learns a residual on top of it."""
    if isinstance(model, LstmModel) and cfg.warm_start:
        for p in model.linear.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _train_warm_start(
    cfg: ModelConfig, cache: Any, ckpt_dir: Path, *, progress: bool
) -> LogisticModel:
    """The logistic generator of ``cfg``'s preset, seed and validation split, trained to start an
    LSTM's logistic path (checkpoint: ``ckpt_dir/warm_start/``)."""
    from training.candidates.config import model_config

    log_cfg = model_config(
        "logistic",
        cfg.preset,
        cfg.num_classes,
        seed=cfg.seed,
        overrides={"val_fraction": cfg.val_fraction},
    )
    out = train_model(log_cfg, cache, ckpt_dir / "warm_start", progress=progress)
    assert isinstance(out.model, LogisticModel)
    return out.model


def _check_same_split(a: ModelConfig, b: ModelConfig) -> None:
    """The warm start must not have seen the LSTM's validation videos: same split settings."""
    if (a.seed, a.val_fraction) != (b.seed, b.val_fraction):
        raise ValueError(
            f"warm start: the logistic model's split (seed {a.seed}, val_fraction "
            f"{a.val_fraction}) is not the LSTM's (seed {b.seed}, val_fraction {b.val_fraction})"
        )


def _record_start(
    model: LstmModel, feed: _PooledFeed | _PaddedFeed, state: LoopState, progress: bool
) -> None:
    """Make the warm-started weights the best so far (epoch 0): training keeps a later epoch
    only when its validation loss is lower, so the model cannot end worse on the holdout than the
    logistic model it started from."""
    model.eval()
    with torch.no_grad():
        val_loss, val_map = feed.validate()
    state.start = {"val_loss": val_loss, "val_map": val_map}
    state.best_val = _criterion(model.cfg, val_loss, val_map)  # type: ignore[arg-type]
    state.best_epoch = 0
    state.best_state = copy.deepcopy(model.state_dict())
    if progress:
        tqdm.write(f"warm start (epoch 0): val loss {val_loss:.4f}, val mAP {val_map:.4f}")


def _best_val_loss(state: LoopState) -> float:
    """The validation loss of the kept weights (epoch ``best_epoch``; 0: the warm start)."""
    if state.best_epoch == 0 and state.start:
        return state.start["val_loss"]
    for h in state.history:
        if h["epoch"] == state.best_epoch:
            return h["val_loss"]
    return state.best_val


def train_model(
    cfg: ModelConfig,
    cache: Any,
    ckpt_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    init: LogisticModel | None = None,
) -> TrainOutcome:
    """Train one generator on a :class:`training.data.FrameCache` of ``train/``.

    Holds out ``cfg.val_fraction`` of the videos (by video, seeded) for early stopping on the
    validation loss or mAP (``cfg.select``; ``cfg.patience`` epochs without improvement). Writes
    ``ckpt_dir/last.pt`` after every epoch (model, optimizer, best weights, history, config); with
    ``resume`` an existing checkpoint of the same config continues where it stopped (a finished
    one is returned as is). An LSTM with ``cfg.warm_start`` starts its logistic path from
    ``init`` (a logistic generator trained on the same split), else trains one first (checkpoint
    in ``ckpt_dir/warm_start/``).
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = ckpt_dir / CHECKPOINT_NAME
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    train_idx, val_idx = split_train_val(len(cache), cfg.val_fraction, cfg.seed)
    opt = _optimizer(model, cfg)
    resuming = resume and ckpt_path.exists()
    state = resume_from(ckpt_path, cfg, model, opt) if resuming else LoopState()
    targets = torch.from_numpy(cache.label_matrix(cfg.num_classes))
    feed = _feed(model, cache, targets, train_idx, val_idx)
    if not resuming:
        feed.prepare()
        if cfg.warm_start:
            assert isinstance(feed, _PaddedFeed)
            if init is None:
                init = _train_warm_start(cfg, cache, ckpt_dir, progress=progress)
            _check_same_split(init.cfg, cfg)
            feed.warm_start(init)
            if cfg.calibrate:
                feed.calibrate()
            _record_start(model, feed, state, progress)
    for epoch in range(state.epoch, cfg.epochs):
        trained = _train_epoch(model, opt, feed, cfg, epoch, progress)
        _end_epoch(model, feed, state, cfg, epoch, trained, progress)
        save_checkpoint(ckpt_path, cfg, model, opt, state)
        if state.stopped:
            break
    if state.best_state is None:  # zero epochs requested: keep the fresh weights
        state.best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(state.best_state)
    model.requires_grad_(True)  # the freeze was the loop's: as a checkpoint rebuilds the model
    model.eval()
    return TrainOutcome(
        model=model,
        history=state.history,
        best_epoch=state.best_epoch,
        best_val_loss=_best_val_loss(state),
        train_seconds=state.elapsed,
        videos_per_second=state.seen / state.elapsed if state.elapsed > 0 else 0.0,
        checkpoint=ckpt_path,
    )
