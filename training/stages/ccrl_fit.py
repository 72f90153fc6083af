"""Stage 3 of ``ccrl train``: what CCRL on one candidate generator leaves (:class:`CcrlFit`).

The fits themselves, in one process or on Dask, are :mod:`training.stages.ccrl_select`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.bank import ClassBank
    from training.ccrl import CcrlModel, PairSet, VideoOutputs
    from training.objectives import GbmChoice


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
