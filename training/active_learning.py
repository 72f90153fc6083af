"""The report's active-learning simulation: does labelling the review queue's segments raise a
class's AP faster than labelling segments at random?

For each simulated class c (the rated classes with the most rated videos, at most
``max_classes``) the rated videos of c are split in half by video: a **pool** whose rated pairs
are the segments a curator could label (their ratings are the oracle's answers) and an
**evaluation** half whose rated pairs measure the class's AP (:func:`training.metric.
average_precision`), never labelled. The bank starts small: c's labels are only a seed of
``seed_positives`` positives and ``seed_negatives`` negatives drawn from the pool (the same seed
for every strategy; the other classes' labels never enter c's features). Then ``rounds`` times,
``per_round`` unlabelled pool pairs are labelled, chosen by

- ``uncertain``: the smallest ``|margin|`` (the service's ``uncertain`` queue, margin 0 being the
  booster's boundary, :func:`service.review.margin_function`);
- ``top_unlabelled``: the best scores (the service's ``top_unlabelled`` queue);
- ``random``: uniformly (the mean of ``random_repeats`` draws),

each batch entering the bank with its ratings, and every pair re-scored with the new bank (the
similarity columns, :func:`service.features.similarity_columns`; the booster is not retrained,
as in the service). A pool that runs out ends a class's rounds early (its last AP is carried
on). The result is the mean AP over the simulated classes after each round, whatever it shows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from service.bank import ClassBank
from service.bundle import Bundle, predict_pairs
from service.features import build_pair_features, similarity_columns
from service.review import margin_function, objective_name, queue_priority
from service.yt8m import SEGMENT_FRAMES, Video, segment_id

if TYPE_CHECKING:
    from training.ccrl import VideoOutputs

F32 = npt.NDArray[np.float32]
STRATEGIES = ("uncertain", "top_unlabelled", "random")


@dataclass(frozen=True)
class SimConfig:
    """The simulation's sizes (defaults: the report's)."""

    rounds: int = 5
    per_round: int = 10
    seed_positives: int = 2
    seed_negatives: int = 2
    max_classes: int = 8
    max_videos: int = 80
    random_repeats: int = 3
    seed: int = 0


@dataclass
class _ClassSim:
    """One class's inputs: its rated videos' outputs and base feature rows, the pool and the
    evaluation pairs (``(video index, segment, label)``)."""

    class_id: int
    outs: list[VideoOutputs]
    rows: list[F32]  # per video: float32 [S, NF] for the class
    pool: list[tuple[int, int, int]]
    evals: list[tuple[int, int, int]]


def choose_classes(videos: Sequence[Video], cfg: SimConfig) -> list[int]:
    """The rated classes with the most rated videos that have a positive in at least 2 videos."""
    rated: dict[int, set[str]] = {}
    positive: dict[int, set[str]] = {}
    for v in videos:
        for c, s in zip(v.segment_labels.tolist(), v.segment_scores.tolist(), strict=True):
            rated.setdefault(int(c), set()).add(v.id)
            if s >= 0.5:
                positive.setdefault(int(c), set()).add(v.id)
    ok = [c for c in rated if len(positive.get(c, ())) >= 2]
    return sorted(ok, key=lambda c: (-len(rated[c]), c))[: cfg.max_classes]


def _class_sim(
    c: int, outs: Sequence[VideoOutputs], bank: ClassBank, max_sim: bool, rng: np.random.Generator
) -> _ClassSim | None:
    """Split the rated videos of ``c`` in pool / evaluation halves and build their rows."""
    mine = [o for o in outs if (o.rated_class == c).any()]
    rng.shuffle(mine)  # type: ignore[arg-type]
    half = len(mine) // 2
    if half < 1:
        return None
    rows = [
        build_pair_features(
            o.video_probs, o.segment_probs, o.segment_embeddings, [c], bank, o.id, max_sim=max_sim
        ).x
        for o in mine
    ]
    pairs = [
        (i, int(s), int(y))
        for i, o in enumerate(mine)
        for k, s, y in zip(o.rated_class, o.rated_segment, o.rated_label, strict=True)
        if k == c
    ]
    pool = [p for p in pairs if p[0] < half]
    evals = [p for p in pairs if p[0] >= half]
    if not any(p[2] for p in pool) or not any(p[2] for p in evals):
        return None
    return _ClassSim(c, list(mine), rows, pool, evals)


def _add(bank: ClassBank, sim: _ClassSim, picks: Sequence[tuple[int, int, int]]) -> ClassBank:
    """The bank with the pool pairs ``picks`` labelled (their ratings)."""
    if not picks:
        return bank
    emb = np.stack([sim.outs[i].segment_embeddings[s] for i, s, _ in picks])
    return bank.add(
        emb,
        np.full(len(picks), sim.class_id, np.int64),
        np.asarray([y for _, _, y in picks], np.int8),
        [sim.outs[i].id for i, _, _ in picks],
        np.asarray([s * SEGMENT_FRAMES for _, s, _ in picks], np.int64),
    )


def _scores(bundle: Bundle, sim: _ClassSim, bank: ClassBank) -> list[F32]:
    """Every segment's score for the class with ``bank``: float32 [S] per video."""
    xs = []
    for o, base in zip(sim.outs, sim.rows, strict=True):
        x = base.copy()[None]  # [1, S, NF]
        similarity_columns(
            x, o.segment_embeddings, [sim.class_id], bank, o.id, max_sim=bundle.max_sim
        )
        xs.append(x[0])
    flat = predict_pairs(bundle.booster, np.concatenate(xs))
    cuts = np.cumsum([len(x) for x in xs])[:-1]
    return list(np.split(flat, cuts))


def _ap(sim: _ClassSim, scores: Sequence[F32]) -> float:
    from training.metric import average_precision

    tokens = [segment_id(sim.outs[i].id, s * SEGMENT_FRAMES) for i, s, _ in sim.evals]
    values = np.asarray([scores[i][s] for i, s, _ in sim.evals], np.float64)
    order = np.argsort(-values, kind="stable")
    rated = {t: float(y) for t, (_, _, y) in zip(tokens, sim.evals, strict=True)}
    return average_precision([tokens[j] for j in order.tolist()], rated)


def _run(
    bundle: Bundle,
    sim: _ClassSim,
    start: ClassBank,
    labelled: set[tuple[int, int]],
    strategy: str,
    cfg: SimConfig,
    rng: np.random.Generator,
) -> list[float]:
    """AP after the seed and after each round of one strategy on one class."""
    to_margin = margin_function(objective_name(bundle.booster))
    bank, done = start, set(labelled)
    scores = _scores(bundle, sim, bank)
    curve = [_ap(sim, scores)]
    for _ in range(cfg.rounds):
        left = [p for p in sim.pool if (p[0], p[1]) not in done]
        if left:
            if strategy == "random":
                picks = [left[j] for j in rng.permutation(len(left))[: cfg.per_round].tolist()]
            else:
                s = np.asarray([scores[i][seg] for i, seg, _ in left], np.float32)
                prio = queue_priority(strategy, s, to_margin(s))
                picks = [left[j] for j in np.argsort(-prio, kind="stable")[: cfg.per_round]]
            done |= {(i, s) for i, s, _ in picks}
            bank = _add(bank, sim, picks)
            scores = _scores(bundle, sim, bank)
        curve.append(_ap(sim, scores))
    return curve


def _seed(sim: _ClassSim, cfg: SimConfig, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    pos = [p for p in sim.pool if p[2] == 1]
    neg = [p for p in sim.pool if p[2] == 0]
    take_p = [pos[j] for j in rng.permutation(len(pos))[: cfg.seed_positives].tolist()]
    take_n = [neg[j] for j in rng.permutation(len(neg))[: cfg.seed_negatives].tolist()]
    return take_p + take_n


def simulate_class(
    bundle: Bundle, sim: _ClassSim, cfg: SimConfig, seed: int
) -> tuple[dict[str, list[float]], int]:
    """The AP curves of every strategy on one class (random: the mean of its repeats), and the
    number of seed labels."""
    rng = np.random.default_rng([cfg.seed, seed, 7])
    seed_pairs = _seed(sim, cfg, rng)
    # only c's own labels enter c's features: a bank of c's seed alone scores c like the whole
    # bank with c's entries replaced, and grows in O(labels) rather than O(bank)
    start = _add(ClassBank.empty(bundle.num_classes, bundle.bank.dim), sim, seed_pairs)
    labelled = {(i, s) for i, s, _ in seed_pairs}
    out: dict[str, list[float]] = {}
    for strategy in STRATEGIES:
        repeats = cfg.random_repeats if strategy == "random" else 1
        curves = [
            _run(bundle, sim, start, labelled, strategy, cfg, np.random.default_rng([seed, r]))
            for r in range(repeats)
        ]
        out[strategy] = np.mean(np.asarray(curves), axis=0).tolist()
    return out, len(seed_pairs)


def simulate(
    bundle: Bundle, videos: Sequence[Video], cfg: SimConfig | None = None
) -> dict[str, Any]:
    """The whole simulation on rated ``videos``: the report's ``active_learning`` section."""
    from training.ccrl import CandidateRunner

    cfg = cfg or SimConfig()
    t0 = time.perf_counter()
    classes = choose_classes(videos, cfg)
    wanted = {v.id for v in videos if set(v.segment_labels.tolist()) & set(classes)}
    runner = CandidateRunner(bundle.candidate_path, threads=1)
    outs = [runner(v) for v in videos if v.id in wanted]
    rng = np.random.default_rng([cfg.seed, 11])
    per_class: dict[str, dict[str, list[float]]] = {}
    sizes: dict[str, dict[str, int]] = {}
    for c in classes:
        mine = [o for o in outs if (o.rated_class == c).any()][: cfg.max_videos]
        sim = _class_sim(c, mine, bundle.bank, bundle.max_sim, rng)
        if sim is None:
            continue
        per_class[str(c)], seeded = simulate_class(bundle, sim, cfg, c)
        left = len(sim.pool) - seeded
        sizes[str(c)] = {
            "pool_pairs": len(sim.pool),
            "eval_pairs": len(sim.evals),
            "rounds_with_labels": min(cfg.rounds, -(-left // cfg.per_round)),
        }
    return _summary(per_class, sizes, cfg, time.perf_counter() - t0)


def _summary(
    per_class: Mapping[str, Mapping[str, list[float]]],
    sizes: Mapping[str, Mapping[str, int]],
    cfg: SimConfig,
    seconds: float,
) -> dict[str, Any]:
    labels = [cfg.per_round * r for r in range(cfg.rounds + 1)]
    out: dict[str, Any] = {
        "config": {
            "rounds": cfg.rounds,
            "per_round": cfg.per_round,
            "seed_labels": {"positive": cfg.seed_positives, "negative": cfg.seed_negatives},
            "random_repeats": cfg.random_repeats,
        },
        "labels_added": labels,
        "classes": sorted(int(c) for c in per_class),
        "sizes": dict(sizes),
        "per_class": {c: dict(v) for c, v in per_class.items()},
        "seconds": round(seconds, 2),
    }
    if not per_class:
        out["mean_ap"] = {}
        out["verdict"] = "no class had rated positives on both sides of the split: not simulated"
        return out
    mean = {s: np.mean([per_class[c][s] for c in per_class], axis=0).tolist() for s in STRATEGIES}
    out["mean_ap"] = mean
    out["verdict"] = verdict(mean)
    return out


def verdict(mean: Mapping[str, Sequence[float]]) -> str:
    """One honest sentence per queue: its mean AP gain over random after the first round, on
    average over the rounds (the area between the curves) and after the last round (where pools
    near exhaustion make every strategy label the same pairs)."""
    rnd = np.asarray(mean["random"], np.float64)
    parts = []
    for s in ("uncertain", "top_unlabelled"):
        gain = np.asarray(mean[s], np.float64)[1:] - rnd[1:]
        avg = float(gain.mean())
        word = "beats" if avg > 1e-9 else ("ties" if abs(avg) <= 1e-9 else "trails")
        parts.append(
            f"{s} {word} random by {avg:+.4f} AP on average over the rounds "
            f"({gain[0]:+.4f} after the first, {gain[-1]:+.4f} after the last)"
        )
    return "; ".join(parts)


def plot(al: Mapping[str, Any], path: Path) -> Path:
    """The mean AP after each round, one line per strategy, saved to ``path``."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for s, ys in al.get("mean_ap", {}).items():
        ax.plot(al["labels_added"], ys, marker="o", label=s)
    ax.set_xlabel("labels added to the class's bank")
    ax.set_ylabel("mean class AP (evaluation half)")
    ax.set_title(f"Active learning: {len(al.get('classes', []))} classes")
    if al.get("mean_ap"):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def markdown(al: Mapping[str, Any] | None) -> list[str]:
    """The report's section: the table of mean AP by round and the plot."""
    if not al:
        return []
    cfg = al["config"]
    lines = [
        "## Active learning: which segments to label next",
        "",
        f"Simulated on {len(al['classes'])} classes ({', '.join(map(str, al['classes']))}): the "
        "class's rated videos split in half (labels come from one half, AP is measured on the "
        f"other), the class's bank reset to {cfg['seed_labels']['positive']} positive + "
        f"{cfg['seed_labels']['negative']} negative seed labels, then {cfg['rounds']} rounds "
        f"of {cfg['per_round']} labels; random is the mean of {cfg['random_repeats']} draws. "
        f"The booster is not retrained ({al['seconds']} s).",
        "",
    ]
    if not al.get("mean_ap"):
        return [*lines, al["verdict"], ""]
    strategies = list(al["mean_ap"])
    pools = [v["pool_pairs"] for v in al["sizes"].values()]
    short = sum(v["rounds_with_labels"] < cfg["rounds"] for v in al["sizes"].values())
    lines += [
        f"Pools: {min(pools)} to {max(pools)} rated pairs per class (median "
        f"{float(np.median(pools)):g}); {short} of {len(pools)} classes ran out of unlabelled "
        f"pool pairs before round {cfg['rounds']} (from there on their curves cannot move).",
        "",
        "| labels added | " + " | ".join(strategies) + " |",
        "|---|" + "---|" * len(strategies),
    ]
    for r, n in enumerate(al["labels_added"]):
        vals = " | ".join(f"{al['mean_ap'][s][r]:.4f}" for s in strategies)
        lines.append(f"| {n} | {vals} |")
    return [
        *lines,
        "",
        f"Result: {al['verdict']}.",
        "",
        "![active learning](active_learning.png)",
        "",
    ]
