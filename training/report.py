"""``ccrl evaluate BUNDLE --data RATED``: the evaluation report (markdown, JSON, PNG plots).

- Table 1 analogue: candidate recall of the bundle's generator (top-K videos per class).
- Table 2 analogue: mAP (training/metric.py) of every model, with and without candidate generation.
- Figure 3 analogue: per-class AP of CCRL and LSTM grouped by class cluster (the synthetic corpus's
  sibling clusters from ``synth.json`` when present, else the vocabulary's vertical).
- Rare vs frequent classes: mean AP over the classes with few / many labelled segments in the bank
  (split at the median positive count of the ranked classes).
- Active learning: the class AP after each round of labels chosen by the review queue's
  strategies vs at random (:mod:`training.active_learning`).

The report goes to ``BUNDLE/report/`` by default; then the manifest's metrics and sha256 list are
rewritten (:func:`training.bundle_writer.finalize_manifest`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.bundle import Bundle, load_bundle
from training.active_learning import markdown as active_learning_md
from training.active_learning import plot as plot_active_learning
from training.report_choices import format_choices

if TYPE_CHECKING:
    from training.metric import Ratings
    from training.submit import CorpusScores

MODEL_ORDER = ("convnet", "lstm", "ccrl", "ensemble")


def _natural(key: str) -> list[Any]:
    """Sort key that orders "cluster 2" before "cluster 10"."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _models(names: Sequence[str]) -> list[str]:
    known = [m for m in MODEL_ORDER if m in names]
    return known + sorted(m for m in names if m not in MODEL_ORDER)


def class_groups(bundle: Bundle, data: Sequence[Path]) -> tuple[dict[int, str], str]:
    """Class id -> group label, and what the groups are (``cluster`` or ``vertical``).

    Uses ``synth.json`` (its ``classes[].cluster``) next to the data when present.
    """
    names = bundle.class_names
    for p in data:
        for cand in (Path(p) / "synth.json", Path(p).parent / "synth.json"):
            if cand.is_file():
                try:
                    meta = json.loads(cand.read_text(encoding="utf-8"))
                    clusters = {int(c["id"]): int(c["cluster"]) for c in meta["classes"]}
                except (KeyError, TypeError, ValueError, json.JSONDecodeError):
                    continue
                out = {}
                for c, k in clusters.items():
                    family = names.get(c, "").split(" ")[0]
                    out[c] = f"cluster {k}" + (f" ({family})" if family else "")
                return out, "cluster"
    return {c.id: c.vertical or "(none)" for c in bundle.manifest.classes}, "vertical"


def evaluate(
    bundle: Bundle,
    data: Sequence[Path],
    *,
    threads: int = 2,
    progress: bool = True,
    k: int | None = None,
) -> dict[str, Any]:
    """Score the rated corpus ``data`` with every model of the bundle; returns the report dict."""
    from training.report_choices import choices

    t0 = time.perf_counter()
    cs, ratings = _score(bundle, data, threads=threads, progress=progress, k=k)
    table2, per_class = map_table(cs, ratings)
    ap_classes = sorted(int(c) for c in per_class["ccrl"]["cg"])
    groups, group_kind = class_groups(bundle, data)
    best_single, checks = paper_checks(table2)
    return {
        "bundle": str(bundle.path),
        "data": [str(p) for p in data],
        "videos": len(cs.video_ids),
        "ratings": ratings.num_ratings,
        "classes_with_positives": len(ap_classes),
        "ensemble": cs.ensemble,
        "table1": recall_table(cs, ratings, bundle.num_classes),
        "table2": table2,
        "best_single_model_cg": best_single,
        "checks": checks,
        "cg_headroom": cg_headroom(ratings),
        "per_class_ap": per_class,
        "groups": {"kind": group_kind, "by_group": group_ap(per_class, ap_classes, groups)},
        "rare_vs_frequent": rare_vs_frequent(bundle, per_class, ap_classes),
        "active_learning": active_learning(bundle, data),
        "choices": choices(bundle.manifest.config),
        "seconds": {**cs.seconds, "total": round(time.perf_counter() - t0, 2)},
    }


def _score(
    bundle: Bundle, data: Sequence[Path], *, threads: int, progress: bool, k: int | None
) -> tuple[CorpusScores, Ratings]:
    """Every model's scores on the rated corpus ``data`` (with and without CG), and its ratings."""
    from service.tfrecord import read_videos
    from training.metric import Ratings
    from training.submit import score_corpus

    videos = list(read_videos(list(data), progress=False))
    if not videos:
        raise ValueError(f"no videos in {[str(p) for p in data]}")
    ratings = Ratings(videos)
    if not ratings.positive_classes():
        raise ValueError(f"{[str(p) for p in data]}: no positive segment ratings to evaluate")
    models = ["ccrl", *bundle.baseline_paths]
    if bundle.manifest.config.get("ensemble", {}).get("members"):
        models.append("ensemble")
    cs = score_corpus(
        bundle,
        videos,
        models=models,
        cg_modes=(True, False),
        k=k,
        threads=threads,
        progress=progress,
        total=len(videos),
        alternative=True,
    )
    return cs, ratings


def active_learning(bundle: Bundle, data: Sequence[Path]) -> dict[str, Any]:
    """The active-learning simulation on the rated ``data`` (:mod:`training.active_learning`)."""
    from service.tfrecord import read_videos
    from training.active_learning import simulate

    rated = [v for v in read_videos(list(data)) if len(v.segment_labels)]
    return simulate(bundle, rated)


def recall_table(cs: CorpusScores, ratings: Ratings, num_classes: int) -> dict[str, Any]:
    """Table 1: candidate recall of the generator at K (and a few other K), and what CG keeps."""
    from training.metric import candidate_recall

    cls = cs.classes
    full = np.zeros((len(cs.video_ids), num_classes), np.float32)
    full[:, cls] = cs.video_probs
    ks = sorted({1, max(1, cs.k // 2), cs.k, min(2 * cs.k, len(cs.video_ids))})
    rec = candidate_recall(cs.video_ids, full, _restrict(ratings, cls), ks)
    segs_cg = int(sum(len(cs.candidate_rows(r, True)) for r in range(len(cls))))
    return {
        "k": cs.k,
        "video_share": cs.k / max(len(cs.video_ids), 1),
        "videos": len(cs.video_ids),
        "segments": cs.num_segments,
        "recall_at_k": rec.mean[cs.k],
        "micro_recall_at_k": rec.micro[cs.k],
        "recall_curve": {str(kk): rec.mean[kk] for kk in ks},
        "segments_kept_per_class": segs_cg / max(len(cls), 1),
        "reduction_factor": cs.num_segments * len(cls) / max(segs_cg, 1),
        "per_class_recall_at_k": {str(c): v for c, v in rec.per_class(cs.k).items()},
    }


Table2 = dict[str, dict[str, float]]
"""model -> ``cg`` / ``no_cg`` -> mAP."""
PerClassAP = dict[str, dict[str, dict[str, float]]]
"""model -> ``cg`` / ``no_cg`` -> class id (as a string) -> AP."""


def map_table(cs: CorpusScores, ratings: Ratings) -> tuple[Table2, PerClassAP]:
    """Table 2: mAP of every model with and without CG (``{model: {cg, no_cg}}``); per-class AP."""
    from training.metric import score_submission

    table2: Table2 = {}
    per_class: PerClassAP = {}
    for m in _models(cs.models):
        table2[m], per_class[m] = {}, {}
        for cg in (True, False):
            key = "cg" if cg else "no_cg"
            res = score_submission(cs.ranked(m, cg), ratings)
            table2[m][key] = res.map
            per_class[m][key] = {str(c): s.ap for c, s in res.per_class.items()}
    return table2, per_class


def _mean_ap(per_class: PerClassAP, model: str, classes: Sequence[int]) -> float:
    """Mean AP with CG of ``model`` over ``classes`` (non-empty)."""
    return float(np.mean([per_class[model]["cg"][str(c)] for c in classes]))


def group_ap(
    per_class: PerClassAP, ap_classes: list[int], groups: Mapping[int, str]
) -> dict[str, dict[str, Any]]:
    """Figure 3: ``{group: {"classes": [ids], "mean_ap": {model: mean AP with CG}}}``."""
    by_group: dict[str, dict[str, Any]] = {}
    for c in ap_classes:
        by_group.setdefault(groups.get(c, "(none)"), {"classes": []})["classes"].append(c)
    for info in by_group.values():
        info["mean_ap"] = {m: _mean_ap(per_class, m, info["classes"]) for m in per_class}
    return by_group


def rare_vs_frequent(
    bundle: Bundle, per_class: PerClassAP, ap_classes: list[int]
) -> dict[str, Any]:
    """Mean AP with CG over the rare and the frequent classes (split at the median count).

    The count is the ``train/`` videos labelled with the class (recorded in the manifest), else
    the class's positives in the bank.
    """
    raw_classes = bundle.manifest.raw.get("classes", [])
    train_videos = {int(c["id"]): c.get("train_videos") for c in raw_classes}
    if all(train_videos.get(c) is not None for c in ap_classes):
        counts = {c: int(train_videos[c]) for c in ap_classes}  # type: ignore[arg-type]
        what = "train/ videos labelled with the class"
    else:
        counts = {c: int(bundle.bank.pos_count[c]) for c in ap_classes}
        what = "labelled positives in the bank"
    median = float(np.median(list(counts.values()))) if counts else 0.0
    rare = [c for c in ap_classes if counts[c] <= median]
    frequent = [c for c in ap_classes if counts[c] > median]
    return {
        "split": f"{what}: <= {median:g} (rare) vs > {median:g} (frequent)",
        "rare_classes": len(rare),
        "frequent_classes": len(frequent),
        "mean_ap": {
            m: {
                "rare": _mean_ap(per_class, m, rare) if rare else None,
                "frequent": _mean_ap(per_class, m, frequent) if frequent else None,
            }
            for m in per_class
        },
    }


def paper_checks(table2: Table2) -> tuple[str, dict[str, bool]]:
    """The best single model with CG, and the paper's claims checked on Table 2 (the runner-up
    GBM ``ccrl[OBJECTIVE]`` is a row of the table, not a model of the bundle: not a single)."""
    singles = [m for m in table2 if m != "ensemble" and not m.startswith("ccrl[")]
    best_single = max(singles, key=lambda m: table2[m]["cg"])
    checks = {
        "ccrl_cg_above_lstm_cg": table2["ccrl"]["cg"] > table2.get("lstm", {"cg": -1.0})["cg"],
        "cg_helps_every_model": all(v["cg"] >= v["no_cg"] for v in table2.values()),
        "ensemble_at_least_best_single": (
            table2["ensemble"]["cg"] >= table2[best_single]["cg"] - 1e-12
            if "ensemble" in table2
            else False
        ),
    }
    return best_single, checks


def cg_headroom(ratings: Mapping[int, Mapping[str, int]]) -> dict[str, int]:
    """Rated negatives, and those in videos holding no positive of their class (the only pairs CG
    can remove to raise AP: every other rated pair of a class shares a video with a positive)."""
    total = outside = 0
    for rated in ratings.values():
        pos_videos = {t.rpartition(":")[0] for t, y in rated.items() if y}
        for t, y in rated.items():
            if not y:
                total += 1
                outside += t.rpartition(":")[0] not in pos_videos
    return {"negatives": total, "negatives_outside": outside}


def _restrict(ratings: Mapping[int, Mapping[str, int]], cls: np.ndarray) -> dict[int, Any]:
    keep = set(cls.tolist())
    return {c: r for c, r in ratings.items() if c in keep}


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def format_markdown(rep: Mapping[str, Any]) -> str:
    """The report as markdown: one section per table, each with its plot."""
    lines = [
        "# CCRL evaluation report",
        "",
        f"Data: {', '.join(rep['data'])} ({rep['videos']} videos, {rep['ratings']} rated pairs, "
        f"{rep['classes_with_positives']} classes with positives). Bundle: `{rep['bundle']}`.",
        "",
        *_md_recall(rep["table1"]),
        *_md_map(rep),
        *_md_groups(rep["groups"], list(rep["per_class_ap"])),
        *_md_rare_frequent(rep["rare_vs_frequent"]),
        *active_learning_md(rep.get("active_learning")),
        *format_choices(rep.get("choices", {})),
    ]
    return "\n".join(lines)


def _md_recall(t1: Mapping[str, Any]) -> list[str]:
    """Table 1: candidate recall at K, and the recall curve."""
    return [
        "## Table 1 analogue: candidate generation",
        "",
        f"Top **K = {t1['k']}** videos per class ({t1['k'] / t1['videos']:.3g} of the videos, the "
        "share chosen on the holdout): average recall "
        f"**{t1['recall_at_k']:.4f}** (micro {t1['micro_recall_at_k']:.4f}); "
        f"{t1['segments_kept_per_class']:.1f} segments kept per class out of {t1['segments']} "
        f"({t1['reduction_factor']:.1f}x fewer pairs).",
        "",
        "| K | average recall |",
        "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in t1["recall_curve"].items()],
        "",
    ]


def _md_map(rep: Mapping[str, Any]) -> list[str]:
    """Table 2: mAP with and without CG, the ensemble, the checks and what CG can gain."""
    ens, room = rep["ensemble"], rep["cg_headroom"]
    none_outside = (
        " (none: on this data CG cannot raise mAP, it can only lose the positives outside the "
        "top K)."
    )
    return [
        "## Table 2 analogue: mAP with and without candidate generation",
        "",
        "| Model | Without CG | With CG |",
        "|---|---|---|",
        *[f"| {m} | {v['no_cg']:.4f} | {v['cg']:.4f} |" for m, v in rep["table2"].items()],
        "",
        f"Ensemble: weighted {ens.get('method', '?')} of {ens.get('members', [])} with weights "
        f"{ens.get('weights')} (averaging and CCRL weight chosen on the validate 10% holdout).",
        "",
        "Checks:",
        "",
        *[f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in rep["checks"].items()],
        "",
        "What CG can gain here: the metric drops unrated segments, so CG can only help by removing "
        "rated negatives that lie in videos outside the class's top K. "
        f"{room['negatives_outside']} of {room['negatives']} rated "
        "negatives lie in videos without a positive rating of their class"
        + (none_outside if room["negatives_outside"] == 0 else "."),
        "",
    ]


def _md_groups(groups: Mapping[str, Any], models: list[str]) -> list[str]:
    """Figure 3: mean per-class AP (with CG) of each group, one column per model."""
    lines = [
        f"## Figure 3 analogue: per-class AP (with CG) by {groups['kind']}",
        "",
        "| Group | Classes | " + " | ".join(models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    for g, info in _sorted_groups(groups):
        vals = " | ".join(f"{info['mean_ap'][m]:.3f}" for m in models)
        lines.append(f"| {g} | {len(info['classes'])} | {vals} |")
    return [*lines, "", "![per-cluster AP](per_cluster_ap.png)", ""]


def _md_rare_frequent(rf: Mapping[str, Any]) -> list[str]:
    """Mean AP (with CG) of the rare and the frequent classes, and the two plots' links."""
    lines = [
        "## Rare vs frequent classes (AP with CG)",
        "",
        f"Split: {rf['split']} ({rf['rare_classes']} rare, {rf['frequent_classes']} frequent).",
        "",
        "| Model | Rare | Frequent |",
        "|---|---|---|",
    ]
    for m, v in rf["mean_ap"].items():
        r = "-" if v["rare"] is None else f"{v['rare']:.4f}"
        f = "-" if v["frequent"] is None else f"{v['frequent']:.4f}"
        lines.append(f"| {m} | {r} | {f} |")
    return [*lines, "", "![table 2](table2_map.png) ![rare vs frequent](rare_frequent.png)", ""]


def _sorted_groups(groups: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The groups' ``(label, info)`` in natural order ("cluster 2" before "cluster 10")."""
    return sorted(groups["by_group"].items(), key=lambda kv: _natural(kv[0]))


def _paired_bars(
    path: Path,
    values: dict[str, tuple[float, float]],
    labels: tuple[str, str],
    ylabel: str,
    title: str,
) -> Path:
    """Two bars per model (``values[model] = (left, right)``), saved to ``path``."""
    import matplotlib.pyplot as plt

    models = list(values)
    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for side, offset in ((0, -0.2), (1, 0.2)):
        ax.bar(x + offset, [values[m][side] for m in models], 0.4, label=labels[side])
    ax.set_xticks(x, models)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_report(rep: Mapping[str, Any], out: Path) -> list[Path]:
    """Write ``table2_map.png``, ``per_cluster_ap.png``, ``rare_frequent.png`` and
    ``active_learning.png`` into ``out``."""
    import matplotlib

    from training.report_choices import plot_choices

    matplotlib.use("Agg")
    t2, rf = rep["table2"], rep["rare_vs_frequent"]["mean_ap"]
    al = rep.get("active_learning")
    extra = [plot_active_learning(al, out / "active_learning.png")] if al else []
    return [
        *plot_choices(rep.get("choices", {}), out),
        _paired_bars(
            out / "table2_map.png",
            {m: (t2[m]["no_cg"], t2[m]["cg"]) for m in t2},
            ("without CG", "with CG"),
            "mAP",
            "Table 2 analogue",
        ),
        _per_class_bars(out / "per_cluster_ap.png", rep["per_class_ap"], rep["groups"]),
        _paired_bars(
            out / "rare_frequent.png",
            {m: (rf[m]["rare"] or 0.0, rf[m]["frequent"] or 0.0) for m in rf},
            ("rare classes", "frequent classes"),
            "mean AP (with CG)",
            "Rare vs frequent classes",
        ),
        *extra,
    ]


def _per_class_bars(path: Path, per_class: PerClassAP, groups: Mapping[str, Any]) -> Path:
    """Figure 3: AP with CG of every class (CCRL and LSTM bars), grouped, saved to ``path``."""
    import matplotlib.pyplot as plt

    ordered = _sorted_groups(groups)
    shown = [m for m in ("ccrl", "lstm") if m in per_class]
    order = [(g, c) for g, info in ordered for c in info["classes"]]
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(order) + 2), 4))
    xs = np.arange(len(order))
    for i, m in enumerate(shown):
        ax.bar(xs + (i - 0.5) * 0.4, [per_class[m]["cg"][str(c)] for _, c in order], 0.4, label=m)
    bounds = np.cumsum([len(info["classes"]) for _, info in ordered])[:-1]
    for b in bounds:
        ax.axvline(b - 0.5, color="grey", lw=0.6)
    ax.set_xticks(xs, [str(c) for _, c in order], fontsize=6, rotation=90)
    ax.set_ylabel("AP (with CG)")
    ax.set_title(f"Figure 3 analogue: per-class AP, grouped by {groups['kind']}")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(rep: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(rep, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(format_markdown(rep), encoding="utf-8")
    for p in plot_report(rep, out):
        paths[p.stem] = p
    return paths


def summary_metrics(rep: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``metrics``: Table 1/2 numbers, checks, rare vs frequent."""
    return {
        "split": rep["data"],
        "videos": rep["videos"],
        "cg_k": rep["table1"]["k"],
        "cg_video_share": rep["table1"]["video_share"],
        "candidate_recall_at_k": rep["table1"]["recall_at_k"],
        "map": rep["table2"],
        "checks": rep["checks"],
        "rare_vs_frequent": rep["rare_vs_frequent"]["mean_ap"],
    }


def run_evaluate(
    bundle: Path,
    data: Sequence[Path] | Path,
    *,
    out: Path | None = None,
    threads: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """The ``ccrl evaluate`` command. Writes the report (default ``BUNDLE/report``); when it lands
    inside the bundle, the manifest's metrics and file hashes are updated. Returns the metrics."""
    from training.bundle_writer import finalize_manifest

    bundle = Path(bundle)
    paths = [Path(data)] if isinstance(data, (str, Path)) else [Path(p) for p in data]
    b = load_bundle(bundle, nthread=threads)
    rep = evaluate(b, paths, threads=threads, progress=progress)
    dest = Path(out) if out is not None else bundle / "report"
    files = write_report(rep, dest)
    metrics = summary_metrics(rep)
    inside = dest.resolve().is_relative_to(bundle.resolve())
    if inside:
        old = dict(b.manifest.metrics)
        old.update(metrics)
        finalize_manifest(bundle, metrics=old)
    print(format_table(rep))
    print(f"report: {files['markdown']}")
    return metrics


def format_table(rep: Mapping[str, Any]) -> str:
    """Table 2 as plain text (printed by ``ccrl evaluate`` and ``ccrl train``)."""
    lines = [
        f"Candidate recall@K={rep['table1']['k']}: {rep['table1']['recall_at_k']:.4f}",
        f"{'model':<24} {'no CG':>8} {'CG':>8}",
    ]
    for m, v in rep["table2"].items():
        lines.append(f"{m:<24} {v['no_cg']:>8.4f} {v['cg']:>8.4f}")
    lines += [f"{'PASS' if ok else 'FAIL'} {name}" for name, ok in rep["checks"].items()]
    return "\n".join(lines)
