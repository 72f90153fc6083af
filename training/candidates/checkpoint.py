"""Candidate training checkpoints: ``CKPT_DIR/last.pt``, written after every epoch.

A checkpoint holds the model and optimizer state, the best weights so far, the epoch history and
the model's :class:`~training.candidates.config.ModelConfig` (as a dict), so a model can be rebuilt
from its checkpoint alone (:func:`model_from_checkpoint`) and a run resumed exactly
(:func:`resume_from`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from training.candidates.config import ModelConfig
from training.candidates.models import LogisticModel, LstmModel, build_model

CHECKPOINT_FORMAT = "ccrl-candidate-checkpoint-v1"
CHECKPOINT_NAME = "last.pt"


@dataclass
class LoopState:
    """Where a training run stands: everything a checkpoint stores besides the weights.

    Attributes:
        epoch: epochs done (the next epoch to run).
        history: one ``{epoch, train_loss, val_loss, val_map, seconds}`` per epoch done.
        best_val: the best selection value so far (the validation loss, or minus the validation
            mAP with ``select="map"``), at ``best_epoch`` (-1: none yet; 0: the warm start).
        start: ``{val_loss, val_map}`` of the warm-started weights before training (else empty).
        bad: epochs since the last improvement (early stopping at ``cfg.patience``).
        best_state: the weights of ``best_epoch``.
        elapsed: training seconds over all epochs; ``seen``: training videos over all epochs.
        stopped: early stopping fired at the last epoch done.
    """

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = -1
    bad: int = 0
    best_state: dict[str, Tensor] | None = None
    elapsed: float = 0.0
    seen: int = 0
    stopped: bool = False
    start: dict[str, float] = field(default_factory=dict)


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


def save_checkpoint(
    path: Path, cfg: ModelConfig, model: nn.Module, opt: torch.optim.Optimizer, state: LoopState
) -> None:
    """Write the checkpoint of ``state`` to ``path`` atomically (a temporary file, then rename)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "state": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": state.epoch,
        "history": state.history,
        "best_val": state.best_val,
        "best_epoch": state.best_epoch,
        "bad": state.bad,
        "best_state": state.best_state,
        "elapsed": state.elapsed,
        "seen": state.seen,
        "stopped": state.stopped,
        "start": state.start,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def resume_from(
    path: Path, cfg: ModelConfig, model: nn.Module, opt: torch.optim.Optimizer
) -> LoopState:
    """Load the checkpoint at ``path`` into ``model`` and ``opt``; return where the run stands.

    Only ``epochs`` may differ from the checkpoint's config (``ValueError`` naming the fields
    otherwise). A run that stopped early and is not asked for more epochs is returned finished
    (``epoch = cfg.epochs``).
    """
    ckpt = load_checkpoint(path)
    old = ModelConfig.from_dict(ckpt["config"])
    diff = [k for k, v in cfg.to_dict().items() if k != "epochs" and old.to_dict()[k] != v]
    if diff:
        raise ValueError(
            f"{path}: cannot resume, the config differs in {diff} "
            f"(checkpoint {[old.to_dict()[k] for k in diff]}, "
            f"now {[getattr(cfg, k) for k in diff]})"
        )
    model.load_state_dict(ckpt["state"])
    opt.load_state_dict(ckpt["optimizer"])
    state = LoopState(
        epoch=int(ckpt["epoch"]),
        history=list(ckpt["history"]),
        best_val=float(ckpt["best_val"]),
        best_epoch=int(ckpt["best_epoch"]),
        bad=int(ckpt["bad"]),
        best_state=ckpt["best_state"],
        elapsed=float(ckpt["elapsed"]),
        seen=int(ckpt["seen"]),
        start=dict(ckpt.get("start") or {}),
    )
    if ckpt.get("stopped") and cfg.epochs <= int(ckpt["config"]["epochs"]):
        state.epoch = cfg.epochs
    return state
