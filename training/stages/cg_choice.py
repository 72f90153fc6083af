"""Stage 3b of ``ccrl train``: candidate generation and the service's candidate classes, chosen on
the holdout (:mod:`training.cg_select`).

The data: the GBM's cross-fitted holdout scores of every rated ``validate/`` pair (on Dask too)
and the bundle generator's video scores of every ``validate/`` video. The choices go into the
manifest (``config.cg``, ``config.service``) and the report (the curve and its plot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from training.cg_select import HoldoutPairs
    from training.stages.ccrl_fit import CcrlFit
    from training.stages.run import TrainRun
    from training.stages.validate import Validate


def holdout_pairs(run: TrainRun, fit: CcrlFit, val: Validate, rated: list[int]) -> HoldoutPairs:
    """The rated pairs that have a holdout score, and the video scores of every validate video."""
    from training.ccrl import CandidateRunner
    from training.cg_select import HoldoutPairs

    outs = fit.outputs
    if outs is None:
        outs = CandidateRunner(fit.graph, threads=run.threads).run_all(
            val.videos, desc="validate (cg)", progress=run.progress
        )
    scores = fit.model.holdout_scores
    ok = np.flatnonzero(np.isfinite(scores))
    pairs = fit.pairs
    return HoldoutPairs(
        scores=scores[ok],
        class_ids=pairs.class_ids[ok],
        video=pairs.video[ok],
        tokens=[fit.tokens[i] for i in ok.tolist()],
        labels=pairs.y[ok],
        video_probs=np.stack([o.video_probs for o in outs]).astype(np.float32),
        num_segments=np.array([o.num_segments for o in outs], np.int64),
        classes=np.asarray(sorted(rated), np.int64),
    )


def choose_cg_and_service(run: TrainRun, fit: CcrlFit, val: Validate) -> dict[str, Any]:
    """Set ``fit.cg`` and ``fit.service`` (see :mod:`training.cg_select`); returns ``fit.cg``."""
    from training.cg_select import choose_cg, choose_service
    from training.stages.bundle import read_rated_classes

    rated = read_rated_classes(run.data, fit.pairs.class_ids)
    h = holdout_pairs(run, fit, val, rated)
    fit.cg = choose_cg(h)
    fit.service = choose_service(h)
    cg, sv = fit.cg, fit.service
    print(
        f"  candidate generation: top {cg['video_share']:.3g} of the videos per class "
        f"(holdout mAP {cg['holdout_map']:.4f}, recall {cg['holdout_recall']:.4f}; 1/20: "
        f"{cg['holdout_map_paper_rule']:.4f}, recall {cg['holdout_recall_paper_rule']:.4f}; "
        f"no CG: {cg['holdout_map_no_cg']:.4f})"
    )
    print(
        f"  service: max_classes {sv['max_classes']}, min_video_score {sv['min_video_score']:g} "
        f"(holdout mAP {sv['holdout_map']:.4f}; every class: {sv['holdout_map_all_classes']:.4f})"
    )
    return fit.cg
