"""Stage 1 of ``ccrl train``: the candidate generators.

The video-level generators (logistic and LSTM, and their average) trained on the ``train/`` video
labels (``training.candidates``), exported to ONNX with their Recall@K report; or those of a
finished ``ccrl train-candidates`` folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.candidates import CandidateResult, LstmModel
    from training.stages.run import TrainRun


@dataclass
class Generators:
    """Stage 1: the trained candidate generators.

    Attributes:
        result: graphs, Recall@K report, checkpoints, the report's choice and its K.
        lstm: the candidate LSTM (the LSTM baseline starts from it, the ConvNet copies its sizes).
    """

    result: CandidateResult
    lstm: LstmModel

    @property
    def num_classes(self) -> int:
        return self.result.num_classes

    @property
    def graphs(self) -> dict[str, Path]:
        """Generator name -> its ONNX graph (every generator gets a CCRL fit)."""
        return dict(self.result.onnx_paths) or {self.result.model: self.result.onnx_path}


def load_candidates(folder: Path) -> CandidateResult:
    """A ``CandidateResult`` for a finished ``ccrl train-candidates`` output folder."""
    from training.candidates import CandidateResult

    report_json = folder / "report" / "candidates.json"
    onnx_path = folder / "candidate.onnx"
    for p in (report_json, onnx_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing (is {folder} a train-candidates output?)")
    rep = json.loads(report_json.read_text(encoding="utf-8"))
    checkpoints = {p.parent.name: p for p in sorted((folder / "checkpoints").glob("*/last.pt"))}
    report_paths = {p.suffix.lstrip("."): p for p in sorted((folder / "report").iterdir())}
    subs = {n: folder / n / "candidate.onnx" for n in ("logistic", "lstm", "ensemble")}
    onnx_paths = {n: p for n, p in subs.items() if p.is_file()} or {str(rep["chosen"]): onnx_path}
    return CandidateResult(
        onnx_path=onnx_path,
        onnx_paths=onnx_paths,
        model=str(rep["chosen"]),
        k=int(rep["k"]),
        report=rep,
        report_paths=report_paths,
        checkpoints=checkpoints,
        num_classes=int(rep["num_classes"]),
    )


def train_generators(run: TrainRun, candidates: Path | CandidateResult | None) -> Generators:
    """Train the generators on ``train/`` (or reuse ``candidates``) and load the candidate LSTM."""
    from training.candidates import LstmModel, model_from_checkpoint, train_candidates

    if candidates is None:
        cand = train_candidates(
            run.data,
            run.work / "candidates",
            model=run.candidate_model,
            preset=run.preset,
            epochs=run.candidate_epochs,
            seed=run.seed,
            progress=run.progress,
            threads=run.threads,
        )
    elif isinstance(candidates, (str, Path)):
        cand = load_candidates(Path(candidates))
        print(f"  reusing the candidate generator of {candidates}")
    else:
        cand = candidates
    lstm_ckpt = cand.checkpoints.get("lstm")
    if lstm_ckpt is None:
        raise RuntimeError("the candidate stage trained no LSTM (needed by the lstm baseline)")
    lstm = model_from_checkpoint(lstm_ckpt)
    if not isinstance(lstm, LstmModel):
        raise RuntimeError(f"{lstm_ckpt}: expected an LSTM checkpoint, got {type(lstm).__name__}")
    return Generators(cand, lstm)
