"""New classes from online labels, measured (issue 11, item 6).

The service can start a class the GBM never saw: ``POST /classes/{c}/labels`` adds labelled
segments to the bank, and the similarity features of the class then come from them. How good is
such a class? Here a few rated classes are held out of everything the GBM learns from (their pairs
are not trained on, their labelled segments are not in the bank), then 0, 5, 10 and 20 of their
labelled ``validate/`` segments are added through :meth:`ClassBank.add` (the path of the labels
endpoint), and their AP on the ``test/`` split is compared with the mean AP of the trained classes
(scored by the same GBM, no candidate generation for either).

The candidate generator is not retrained: its video labels come from ``train/``, which the service
also has for every vocabulary class; what is new is the class's segment labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from service.bank import ClassBank
from service.features import build_pair_features

if TYPE_CHECKING:
    from training.ccrl import VideoOutputs

I64 = npt.NDArray[np.int64]

SIZES: tuple[int, ...] = (0, 5, 10, 20)
"""Labelled segments added to the bank per held-out class."""
MAX_HELD = 5


def pick_held_classes(
    bank: ClassBank, rated: Sequence[int], *, count: int = MAX_HELD, need: int = 20, seed: int = 0
) -> list[int]:
    """Up to ``count`` rated classes with at least ``need`` labelled segments (one positive at
    least) in the bank, drawn with ``seed``; sorted."""
    ok = [
        c for c in rated if bank.pos_count[c] >= 1 and bank.pos_count[c] + bank.neg_count[c] >= need
    ]
    rng = np.random.default_rng([seed, 2311])
    return sorted(int(c) for c in rng.permutation(ok)[:count]) if ok else []


def bank_without(bank: ClassBank, classes: Sequence[int]) -> ClassBank:
    """The bank without any entry of ``classes``."""
    keep = ~np.isin(bank.emb_class, np.asarray(classes, np.int64))
    return ClassBank.from_entries(
        bank.emb[keep],
        bank.emb_class[keep],
        bank.emb_label[keep],
        bank.emb_video[keep],
        bank.emb_start[keep],
        num_classes=bank.num_classes,
        scan_cap=bank.scan_cap,
    )


def labelled_order(bank: ClassBank, c: int, seed: int = 0) -> I64:
    """Bank entries of class c in the order they are 'labelled online': int64 [n], a seeded
    permutation with a positive first (a user starts a class with an example of it)."""
    idx = np.flatnonzero(bank.emb_class == c)
    idx = np.random.default_rng([seed, 977, c]).permutation(idx)
    pos = np.flatnonzero(bank.emb_label[idx] == 1)
    if len(pos):
        first = int(pos[0])
        idx = np.concatenate([idx[first : first + 1], np.delete(idx, first)])
    return idx.astype(np.int64)


def _class_ap(
    booster: Any,
    outputs: Sequence[VideoOutputs],
    bank: ClassBank,
    classes: I64,
    max_sim: bool,
) -> dict[int, float]:
    """AP of each of ``classes`` on the rated videos of ``outputs`` (every segment listed)."""
    from training.ccrl import score_pairs
    from training.metric import per_class_average_precision

    ratings: dict[int, dict[str, float]] = {int(c): {} for c in classes.tolist()}
    scored: dict[int, list[tuple[float, str]]] = {int(c): [] for c in classes.tolist()}
    for o in outputs:
        if o.num_segments == 0:
            continue
        for c, s, y in zip(
            o.rated_class.tolist(), o.rated_segment.tolist(), o.rated_label.tolist(), strict=True
        ):
            if c in ratings:
                ratings[c][f"{o.id}:{s * 5}"] = y
        pm = build_pair_features(
            o.video_probs,
            o.segment_probs,
            o.segment_embeddings,
            classes,
            bank,
            o.id,
            max_sim=max_sim,
        )
        s = score_pairs(booster, pm.x).reshape(len(classes), o.num_segments)
        tokens = o.tokens()
        for k, c in enumerate(classes.tolist()):
            scored[c].extend(zip(s[k].tolist(), tokens, strict=True))
    preds = {c: [t for _, t in sorted(v, key=lambda p: -p[0])] for c, v in scored.items()}
    keep = {c: r for c, r in ratings.items() if any(y > 0.5 for y in r.values())}
    return per_class_average_precision(preds, keep)


def measure_new_classes(
    val_outputs: Sequence[VideoOutputs],
    test_outputs: Sequence[VideoOutputs],
    bank: ClassBank,
    rated: Sequence[int],
    params: dict[str, Any],
    rounds: int,
    *,
    max_sim: bool = True,
    sizes: Sequence[int] = SIZES,
    seed: int = 0,
) -> dict[str, Any]:
    """Hold classes out of the GBM and the bank, add labels back, and measure their test AP.

    Returns ``{"held_classes", "sizes", "held_ap": {n: {class: AP}}, "held_mean_ap": {n: mean},
    "trained_mean_ap", "trained_classes"}`` (n as strings, JSON-ready).
    """
    from training.ccrl import rated_pairs
    from training.crossfit import fit

    held = pick_held_classes(bank, rated, need=max(sizes), seed=seed)
    if not held:
        return {"held_classes": [], "note": f"no rated class has {max(sizes)} labelled segments"}
    base = bank_without(bank, held)
    pairs = rated_pairs(val_outputs, base, max_sim=max_sim, progress=False)
    train = ~np.isin(pairs.class_ids, held)
    booster = fit(pairs.x[train], pairs.y[train], pairs.class_ids[train], params, rounds)
    trained = np.asarray(sorted(set(int(c) for c in rated) - set(held)), np.int64)
    trained_ap = _class_ap(booster, test_outputs, base, trained, max_sim)
    held_ap: dict[str, dict[str, float]] = {}
    for n in sizes:
        b = base
        for c in held:
            idx = labelled_order(bank, c, seed)[:n]
            if len(idx):
                b = b.add(
                    bank.emb[idx],
                    bank.emb_class[idx],
                    bank.emb_label[idx],
                    bank.emb_video[idx],
                    bank.emb_start[idx],
                )
        aps = _class_ap(booster, test_outputs, b, np.asarray(held, np.int64), max_sim)
        held_ap[str(n)] = {str(c): float(v) for c, v in aps.items()}
    return {
        "held_classes": held,
        "sizes": list(sizes),
        "held_ap": held_ap,
        "held_mean_ap": {
            n: float(np.mean(list(v.values()))) if v else None for n, v in held_ap.items()
        },
        "trained_mean_ap": float(np.mean(list(trained_ap.values()))) if trained_ap else None,
        "trained_classes": len(trained_ap),
    }
