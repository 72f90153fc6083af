"""The report's sections on what training chose on the holdout (from the bundle's manifest).

Every hyper-parameter of the bundle is chosen on the ``validate/`` holdout in code
(``training/stages/``): the generator and the segment embedding of the similarity features, the
GBM's objective / parameters / rounds, candidate generation, the service's candidate classes and
the ensemble. ``ccrl train`` records each choice, with what every candidate scored, in
``manifest.config``; these sections show them next to the ``test/`` tables, and the measured
new-class table (``config.new_classes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def choices(config: Mapping[str, Any]) -> dict[str, Any]:
    """The choice records of a manifest's ``config`` (missing ones are left out)."""
    training = config.get("training", {})
    out: dict[str, Any] = {
        "generator": config.get("candidate_model"),
        "embedding": config.get("embedding"),
        "features_holdout_map": config.get("generators_holdout_map", {}),
        "gbm": training.get("gbm_selection"),
        "cg": config.get("cg"),
        "cg_curve": training.get("cg_curve", []),
        "service": training.get("service_choice") or config.get("service"),
        "ensemble": config.get("ensemble"),
        "ensemble_holdout_map": training.get("ensemble_holdout_map"),
        "ensemble_gain": training.get("ensemble_gain"),
        "new_classes": config.get("new_classes"),
        "alternative": config.get("ccrl_alternative"),
    }
    return {k: v for k, v in out.items() if v}


def _md_features(ch: Mapping[str, Any]) -> list[str]:
    rows = ch.get("features_holdout_map", {})
    if not rows:
        return []
    return [
        "### Generator and embedding of the similarity features",
        "",
        "Cross-fitted holdout mAP of one standard GBM (`binary:logistic`, first grid entry) on the "
        "features of each generator with its own segment embeddings (LSTM: hidden states; "
        "logistic: mean frames) and with mean frames; the LSTM is kept when within 0.005 of the "
        f"best. Kept: **{ch.get('generator')} / {ch.get('embedding')}**.",
        "",
        "| generator / embedding | holdout mAP |",
        "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in rows.items()],
        "",
    ]


def _md_gbm(ch: Mapping[str, Any]) -> list[str]:
    gbm = ch.get("gbm")
    if not gbm:
        return []
    lines = [
        "### GBM objective",
        "",
        f"Kept: **{gbm['objective']}**, {gbm['rounds']} rounds (cross-fitted holdout mAP "
        f"{gbm['oof_map']:.4f}). With a ranking objective the class is the query group and the "
        "scores are margins: only their order within a class means something (the lists, the "
        "index and `top-segments` only order the segments of one class).",
        "",
        "| objective | best holdout mAP |",
        "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in gbm["per_objective_oof_map"].items()],
        "",
    ]
    return lines


def _md_cg(ch: Mapping[str, Any]) -> list[str]:
    cg, curve = ch.get("cg"), ch.get("cg_curve", [])
    if not cg or not curve:
        return []
    kept = "no CG" if cg["no_cg"] else f"the top {cg['video_share']:.3g} of the videos per class"
    return [
        "### Candidate generation",
        "",
        f"Kept: **{kept}** (holdout mAP {cg['holdout_map']:.4f}, recall "
        f"{cg['holdout_recall']:.4f}; the paper's 1/20: mAP {cg['holdout_map_paper_rule']:.4f}, "
        f"recall {cg['holdout_recall_paper_rule']:.4f}; no CG: {cg['holdout_map_no_cg']:.4f}). "
        f"The smallest share whose holdout mAP is within {cg['tolerance']} of the best, "
        f"{cg.get('edge_share', cg['video_share']):.3g}, times {cg.get('safety', 1):g} (a test "
        "split's rarest positives rank lower than the holdout's), within "
        f"{cg['segment_budget']:,} segments per class.",
        "",
        "| share of videos | K (holdout) | segments / class | holdout mAP | holdout recall |",
        "|---|---|---|---|---|",
        *[
            f"| {r['video_share']:.3g} | {r['k']} | {r['segments_per_class']:.0f} | "
            f"{r['map']:.4f} | {r['recall']:.4f} |"
            for r in curve
        ],
        "",
        "![candidate generation on the holdout](cg_holdout.png)",
        "",
    ]


def _md_service(ch: Mapping[str, Any]) -> list[str]:
    sv = ch.get("service")
    if not sv or "by_max_classes" not in sv:
        return []
    return [
        "### The service's candidate classes",
        "",
        f"`max_classes` **{sv['max_classes']}**, `min_video_score` **{sv['min_video_score']:g}** "
        f"(holdout mAP {sv['holdout_map']:.4f}; every class: {sv['holdout_map_all_classes']:.4f}): "
        "the smallest number of classes per video, then the highest video-score floor, within "
        f"{sv['tolerance']} of the best holdout mAP, with CG's margin. The service uses them "
        "unless `CCRL_MAX_CLASSES` / `CCRL_MIN_VIDEO_SCORE` (or a request's `max_classes`) "
        "say otherwise.",
        "",
        "| max_classes | holdout mAP | recall |",
        "|---|---|---|",
        *[
            f"| {r['max_classes']} | {r['map']:.4f} | {r['recall']:.4f} |"
            for r in sv["by_max_classes"]
        ],
        "",
    ]


def _md_ensemble(ch: Mapping[str, Any]) -> list[str]:
    ens, single = ch.get("ensemble"), ch.get("ensemble_holdout_map") or {}
    if not ens:
        return []
    fb = ens.get("fallback")
    what = (
        f"the best single member, **{fb}** (no combination beat it on the holdout by more than "
        "one standard error)"
        if fb
        else f"a weighted {ens.get('method')} of {ens.get('members')}, weights {ens.get('weights')}"
    )
    singles = ", ".join(f"{k} {v:.4f}" for k, v in single.items())
    gain, g = "", ch.get("ensemble_gain") or {}
    if g.get("gain") is not None:
        gain = f" Best combination's gain: {g['gain']:+.4f} ± {g['gain_se']:.4f} (one std. error)."
    return ["### Ensemble", "", f"Kept: {what}. Holdout mAP of the members: {singles}.{gain}", ""]


def _md_new_classes(ch: Mapping[str, Any]) -> list[str]:
    nc = ch.get("new_classes")
    if not nc or not nc.get("held_classes"):
        return []
    held = ", ".join(str(c) for c in nc["held_classes"])
    return [
        "## New classes from online labels",
        "",
        f"Classes {held} were held out of the GBM's training and the bank; then n of their "
        "labelled `validate/` segments were added through the bank (the path of "
        "`POST /classes/{c}/labels`). Test AP (every segment listed, no CG):",
        "",
        "| labelled segments | mean AP of the new classes | mean AP of the trained classes |",
        "|---|---|---|",
        *[
            f"| {n} | {v:.4f} | {nc['trained_mean_ap']:.4f} |"
            for n, v in nc["held_mean_ap"].items()
            if v is not None
        ],
        "",
    ]


def format_choices(ch: Mapping[str, Any]) -> list[str]:
    """Markdown lines of every choice section present."""
    body = [
        *_md_features(ch),
        *_md_gbm(ch),
        *_md_cg(ch),
        *_md_service(ch),
        *_md_ensemble(ch),
    ]
    head = ["## Chosen on the validate holdout", ""] if body else []
    return [*head, *body, *_md_new_classes(ch)]


def plot_choices(ch: Mapping[str, Any], out: Path) -> list[Path]:
    """``cg_holdout.png`` (holdout mAP and recall against the share of the videos kept)."""
    from training.cg_select import plot_cg

    if not ch.get("cg") or not ch.get("cg_curve"):
        return []
    return [plot_cg({**ch["cg"], "curve": ch["cg_curve"]}, out / "cg_holdout.png")]
