"""Stage 5b of ``ccrl train``: new classes from online labels, measured on ``test/``
(:mod:`training.new_classes`): a few rated classes held out of the GBM and the bank, then 0, 5,
10 and 20 of their labelled ``validate/`` segments added through the bank; their test AP against
the mean AP of the trained classes goes into the manifest (``config.new_classes``) and the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.stages.ccrl_fit import CcrlFit
    from training.stages.run import TrainRun


def measure_online_classes(run: TrainRun, fit: CcrlFit) -> dict[str, Any]:
    """The measurement (``{}`` without a ``test/`` split or the validate outputs)."""
    from service.tfrecord import read_videos
    from training.ccrl import CandidateRunner
    from training.new_classes import measure_new_classes
    from training.stages.bundle import read_rated_classes

    test_dir = run.data / "test"
    if not test_dir.is_dir() or fit.outputs is None:
        return {}
    runner = CandidateRunner(fit.graph, threads=run.threads)
    test = runner.run_all(read_videos([test_dir]), desc="test (new classes)", progress=run.progress)
    rated = read_rated_classes(run.data, fit.pairs.class_ids)
    res = measure_new_classes(
        fit.outputs,
        test,
        fit.bank,
        rated,
        fit.model.params,
        fit.model.rounds,
        max_sim=run.ccrl.max_sim,
        seed=run.seed,
    )
    if res.get("held_classes"):
        means = {n: round(v, 4) for n, v in res["held_mean_ap"].items() if v is not None}
        print(
            f"  held-out classes {res['held_classes']}: test AP by labelled segments {means}; "
            f"trained classes {res['trained_mean_ap']:.4f}"
        )
    return res
