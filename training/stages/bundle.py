"""Stage 6 of ``ccrl train``: the manifest's config and the bundle (``training.bundle_writer``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from training.stages.validate import HOLDOUT_FRACTION

if TYPE_CHECKING:
    from training.stages.baselines import FittedBaseline
    from training.stages.ccrl_fit import CcrlFit
    from training.stages.generators import Generators
    from training.stages.run import TrainRun
    from training.stages.validate import Validate


def read_classes(data: Path, num_classes: int) -> list[dict[str, Any]]:
    """``[{"id", "name", "vertical"}]`` from ``DATA/vocabulary.csv`` (names empty when absent)."""
    from service.vocab import read_vocabulary
    from training.bundle_writer import class_entries

    path = Path(data) / "vocabulary.csv"
    return class_entries(read_vocabulary(path) if path.is_file() else None, num_classes)


def read_rated_classes(data: Path, fallback: np.ndarray) -> list[int]:
    """Class ids of ``DATA/segment_label_ids.csv`` (header ``Index``), else ``fallback``; sorted."""
    from service.vocab import read_segment_label_ids

    path = Path(data) / "segment_label_ids.csv"
    ids = read_segment_label_ids(path) if path.is_file() else np.unique(fallback)
    return sorted(int(c) for c in ids)


def train_config(
    run: TrainRun,
    gens: Generators,
    val: Validate,
    holdout_maps: dict[str, float],
    fit: CcrlFit,
    baselines: dict[str, FittedBaseline],
    ensemble: dict[str, Any],
) -> dict[str, Any]:
    """The manifest's ``config``: the settings, the choices made and how training went."""
    from training.ccrl import config_dict

    return {
        "data": str(run.data),
        "preset": run.preset,
        "seed": run.seed,
        "threads": run.threads,
        "candidate_model": fit.generator,
        "candidate_report_choice": gens.result.model,
        "embedding": fit.embedding,
        "generators_holdout_map": holdout_maps,
        "cg_top_k": gens.result.k,
        "cg": {k: v for k, v in fit.cg.items() if k != "curve"},
        "cg_rule": "K = floor(cg.video_share x videos), chosen on the holdout (training.cg_select)",
        "service": {k: fit.service[k] for k in ("max_classes", "min_video_score")}
        if fit.service
        else {},
        "ccrl_objective": str(fit.model.params.get("objective", "binary:logistic")),
        "ensemble": {k: ensemble.get(k) for k in ("members", "method", "weights", "fallback")},
        "ccrl": config_dict(run.ccrl),
        "finetune": asdict(run.finetune),
        "convnet_pretrain_epochs": run.convnet_pretrain_epochs,
        "holdout": {"fraction": HOLDOUT_FRACTION, "videos": int(val.holdout.sum())},
        "training": {
            "validate_videos": val.num_videos,
            "rated_pairs": len(fit.pairs),
            "positives": int(fit.pairs.y.sum()),
            "ccrl": fit.model.info(),
            **{name: b.info for name, b in baselines.items()},
            "ensemble_holdout_map": ensemble["holdout_map"],
            "ensemble_tried": ensemble["tried"],
            "ensemble_gain": {k: ensemble.get(k) for k in ("gain", "gain_se")},
            "gbm_selection": fit.gbm.info() if fit.gbm is not None else None,
            "cg_curve": fit.cg.get("curve", []),
            "service_choice": fit.service,
        },
    }


def write_train_bundle(
    run: TrainRun,
    gens: Generators,
    fit: CcrlFit,
    baselines: dict[str, FittedBaseline],
    train_videos: npt.NDArray[np.int64],
    config: dict[str, Any],
) -> Path:
    """Write the bundle ``run.out`` (the chosen generator's graph and bank); its manifest path."""
    from training.bundle_writer import write_bundle

    ccrl = fit.model
    alternative = alternative_files(run, fit, config)  # records config.ccrl_alternative
    return write_bundle(
        run.out,
        name=run.out.name,
        candidate_onnx=fit.graph,
        candidate_meta={
            "input": "frames",
            "num_classes": gens.num_classes,
            "embedding_dim": fit.bank.dim,
            "model": fit.generator,
            "preset": run.preset,
            "embedding": fit.embedding,
        },
        booster=ccrl.booster,
        ccrl_params={
            **ccrl.params,
            "rounds": ccrl.rounds,
            "max_sim": run.ccrl.max_sim,
            "max_sim_cap": fit.bank.scan_cap,  # entries per (class, label) the max cosine scans
        },
        bank=fit.bank,
        classes=[
            {**c, "train_videos": int(train_videos[c["id"]])}
            for c in read_classes(run.data, gens.num_classes)
        ],
        rated_classes=read_rated_classes(run.data, fit.pairs.class_ids),
        baselines={name: b.graph for name, b in baselines.items()},
        config=config,
        extra_files={
            **{f"report/candidates/{p.name}": p for p in gens.result.report_paths.values()},
            **alternative,
        },
    )


ALTERNATIVE_FILE = "ccrl_alternative.ubj"
"""The runner-up GBM of the other objective family, for the report's Table 2."""


def alternative_files(run: TrainRun, fit: CcrlFit, config: dict[str, Any]) -> dict[str, Path]:
    """Train the runner-up GBM (a ranking objective when ``binary:logistic`` won, else
    ``binary:logistic``) on all pairs: ``{bundle relpath: file}``; records
    ``config.ccrl_alternative``."""
    from training.crossfit import fit as fit_gbm

    alt = fit.gbm.runner_up if fit.gbm is not None else None
    if not alt:
        return {}
    pairs = fit.pairs
    booster = fit_gbm(pairs.x, pairs.y, pairs.class_ids, alt["params"], alt["rounds"])
    path = run.work / ALTERNATIVE_FILE
    booster.save_model(str(path))
    config["ccrl_alternative"] = {
        "objective": alt["objective"],
        "file": ALTERNATIVE_FILE,
        "rounds": alt["rounds"],
        "oof_map": alt["oof_map"],
        "params": alt["params"],
    }
    return {ALTERNATIVE_FILE: path}
