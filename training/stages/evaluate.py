"""Stage 7 of ``ccrl train``: the evaluation on ``test/`` (``training.report``) and the manifest."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.stages.run import TrainRun


def evaluate_bundle(run: TrainRun) -> dict[str, Any]:
    """Evaluate the bundle on ``test/`` (the report into ``BUNDLE/report/``); its metrics."""
    from training.report import run_evaluate

    test_dir = run.data / "test"
    if not test_dir.is_dir():
        print(f"  no {test_dir}: skipping the evaluation")
        return {}
    with run.timer.stage("evaluate on test/"):
        return run_evaluate(run.out, [test_dir], threads=run.threads, progress=run.progress)


def finish(run: TrainRun, metrics: dict[str, Any]) -> Path:
    """Record the metrics and timings in the manifest (sha256 recomputed), drop the work folder."""
    from training.bundle_writer import finalize_manifest

    metrics["train_seconds"] = {**run.timer.seconds, "total": run.timer.total}
    manifest = finalize_manifest(run.out, metrics=metrics)
    if not run.keep_work:
        shutil.rmtree(run.work, ignore_errors=True)
    print(f"bundle {run.out} written in {run.timer.total:.0f} s (manifest {manifest})")
    return manifest
