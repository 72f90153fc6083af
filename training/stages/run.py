"""What every stage of ``ccrl train`` reads: the run's settings and folders, and the timer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.baselines import FinetuneConfig
    from training.ccrl import CcrlConfig


class StageTimer:
    """Prints ``[stage] name ... done in X s`` lines and keeps the timings."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        print(f"[{time.perf_counter() - self.t0:6.1f}s] {name} ...", flush=True)
        yield
        self.seconds[name] = round(time.perf_counter() - t, 2)
        print(f"[{time.perf_counter() - self.t0:6.1f}s] {name} done in {self.seconds[name]} s")

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 2)


@dataclass
class TrainRun:
    """What every stage reads: the arguments of :func:`run_train`, the folders and the timer.

    Attributes:
        data: the corpus folder (``train/``, ``validate/``, optional ``test/``).
        out: the bundle folder; ``work``: the intermediate folder ``out/../.NAME-work``.
        threads: torch / ONNX Runtime threads (at least 1).
        ccrl: the XGBoost settings; ``finetune``: the baselines' fine-tuning settings.
        Other attributes: as given to :func:`run_train`.
    """

    data: Path
    out: Path
    work: Path
    preset: str
    seed: int
    threads: int
    candidate_model: str
    candidate_epochs: int | None
    convnet_pretrain_epochs: int
    progress: bool
    keep_work: bool
    ccrl: CcrlConfig
    finetune: FinetuneConfig
    timer: StageTimer = field(default_factory=StageTimer)


def start_run(data: Path, out: Path, *, threads: int | None, **args: Any) -> TrainRun:
    """Check the corpus and the arguments, set the torch threads, create the work folder."""
    import torch

    from training.baselines import FinetuneConfig
    from training.ccrl import CcrlConfig

    data, out = Path(data), Path(out)
    for split in ("train", "validate"):
        if not (data / split).is_dir():
            raise FileNotFoundError(f"{data}: no {split}/ folder (expected a `ccrl synth` layout)")
    if args["candidate_model"] not in ("lstm", "ensemble"):
        raise ValueError(
            f"candidate_model must be 'lstm' or 'ensemble', got {args['candidate_model']!r}"
        )
    n_threads = max(1, int(threads or 1))
    torch.set_num_threads(n_threads)
    work = out.parent / f".{out.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    # one XGBoost thread: the rated pairs are few thousand rows, and OpenMP threads that spin on a
    # busy 2-core machine made 2 threads 30x slower than 1 in our measurements
    args["ccrl"] = CcrlConfig(nthread=1)
    args["finetune"] = args["finetune"] or FinetuneConfig()
    return TrainRun(data=data, out=out, work=work, threads=n_threads, **args)
