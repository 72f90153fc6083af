"""Stage 3 of ``ccrl train``: CCRL on every candidate generator, and the generator of the bundle.

For one generator: its outputs on ``validate/`` (ONNX Runtime, the graph the service runs), the
bank of the labelled segment embeddings, the leakage-free features of the rated pairs and the
XGBoost pairwise model on them (grid and early stopping on the holdout, refit on all pairs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.yt8m import SEGMENT_FRAMES, segment_id

if TYPE_CHECKING:
    from service.bank import ClassBank
    from training.ccrl import CcrlModel, PairSet, VideoOutputs
    from training.objectives import GbmChoice
    from training.stages.run import TrainRun
    from training.stages.validate import Validate


@dataclass
class CcrlFit:
    """Stage 3, one generator: its bank, the rated pairs and the CCRL model on them.

    Attributes:
        generator: the generator's name; ``graph``: its ONNX graph.
        bank: the labelled ``validate/`` segment embeddings of this generator.
        pairs: the N rated (segment, class) pairs with their features; ``tokens``: [N] segment ids.
        model: the GBM; ``holdout_map``: its holdout mAP (the best of its grid on the holdout
            pairs, or its cross-fitted holdout mAP, :mod:`training.stages.ccrl_select`).
        embedding: the segment embedding of the similarity features (``hidden``, ``frames``).
        outputs: the generator's outputs of every ``validate/`` video (with that embedding).
        gbm: the objective / parameters / rounds choice, when they were cross-fitted.
        cg, service: candidate generation and the service's candidate classes chosen on the
            holdout (:mod:`training.cg_select`).
    """

    generator: str
    graph: Path
    bank: ClassBank
    pairs: PairSet
    tokens: list[str]
    model: CcrlModel
    holdout_map: float
    embedding: str = "own"
    outputs: list[VideoOutputs] | None = None
    gbm: GbmChoice | None = None
    cg: dict[str, Any] = field(default_factory=dict)
    service: dict[str, Any] = field(default_factory=dict)


def fit_ccrl(run: TrainRun, name: str, graph: Path, val: Validate, num_classes: int) -> CcrlFit:
    """Run generator ``name`` over ``validate/``, build its bank and rated pairs, train CCRL."""
    from training.ccrl import CandidateRunner, build_bank, rated_pairs, train_ccrl

    runner = CandidateRunner(graph, threads=run.threads)
    outs = runner.run_all(val.videos, desc=f"validate ({name})", progress=run.progress)
    bank = build_bank(outs, num_classes)
    pairs = rated_pairs(outs, bank, max_sim=run.ccrl.max_sim, progress=run.progress)
    tokens = [
        segment_id(outs[v].id, s * SEGMENT_FRAMES)
        for v, s in zip(pairs.video, pairs.segment, strict=True)
    ]
    model = train_ccrl(pairs, val.holdout, tokens, run.ccrl, seed=run.seed, progress=run.progress)
    best = max(r["holdout_map"] for r in model.search)
    print(
        f"  {name}: bank {len(bank)} segments ({int(bank.pos_count.sum())} "
        f"positive), D={bank.dim}; {len(pairs)} pairs, {model.rounds} rounds, "
        f"holdout mAP {best:.4f}"
    )
    return CcrlFit(name, graph, bank, pairs, tokens, model, best, outputs=outs)
