"""Pair-feature benchmark: ``python -m loadtests.bench_features [--bank N] [--repeat R]``.

One request's feature work: S segments x K candidate classes of one video against a bank of N
labelled embeddings (D dims, C classes). Prints, best of ``--repeat``, milliseconds per call and
microseconds per pair for:

    brute SIM sums      the bare compute the per-class sums replace: cosine of every segment to
                        every bank entry of the K classes, own video masked, summed per class
    build (sums only)   ``build_pair_features(..., max_sim=False)``: every column but the max cosine
    build (with max)    ``build_pair_features(..., max_sim=True)`` (the default): adds the scan of
                        the K classes' bank entries for the max-cosine columns
    xgboost predict     ``predict_pairs`` of a 300-tree depth-6 model on the pair matrix (1 thread)

and the ratios between them. Nothing here is asserted: it prints what it measures.
"""

from __future__ import annotations

import argparse

import numpy as np
import xgboost as xgb

from loadtests.timing import best_of
from service.bank import ClassBank, unit_rows
from service.bundle import predict_pairs
from service.features import FEATURE_NAMES, FEATURE_TYPES, build_pair_features


def brute_sims(u: np.ndarray, bank: ClassBank, cls: np.ndarray, video: str) -> np.ndarray:
    """[K, S] summed cosine to the positives of each class, own video excluded, over raw entries."""
    sel = np.isin(bank.emb_class, cls) & (bank.emb_label == 1) & (bank.emb_video != video)
    sims = u @ bank.emb[sel].T  # [S, n]
    onehot = (bank.emb_class[sel][None, :] == cls[:, None]).astype(np.float32)  # [K, n]
    return onehot @ sims.T


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bank", type=int, default=200_000, help="labelled bank entries N")
    ap.add_argument("--classes", type=int, default=1000, help="vocabulary size C")
    ap.add_argument("--dim", type=int, default=256, help="embedding dim D")
    ap.add_argument("--segments", type=int, default=60, help="segments per video S")
    ap.add_argument("--candidates", type=int, default=20, help="candidate classes per video K")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    c, d, s, k, n = args.classes, args.dim, args.segments, args.candidates, args.bank
    bank = ClassBank.from_entries(
        rng.normal(size=(n, d)).astype(np.float32),
        rng.integers(0, c, n),
        rng.integers(0, 2, n),
        [f"v{i}" for i in rng.integers(0, max(n // 5, 1), n)],
        rng.integers(0, 60, n) * 5,
        num_classes=c,
    )
    vp = rng.random(c).astype(np.float32)
    sp = rng.random((s, c)).astype(np.float32)
    se = rng.normal(size=(s, d)).astype(np.float32)
    cls = np.argsort(-vp)[:k].astype(np.int64)
    own = str(bank.emb_video[0])
    bank.video_entries(own)  # build the per-video index once, as a long-lived service does
    bank.class_groups()

    u = unit_rows(se)
    pm = build_pair_features(vp, sp, se, cls, bank, own)
    fast = pm.x[:, FEATURE_NAMES.index("sim_pos_sum")].reshape(k, s)
    slow = brute_sims(u, bank, cls, own)
    err = float(np.abs(fast - slow).max())

    x = rng.normal(size=(20_000, len(FEATURE_NAMES))).astype(np.float32)
    x[:, 0] = rng.integers(0, c, len(x))
    dm = xgb.DMatrix(
        x,
        label=rng.integers(0, 2, len(x)).astype(np.float32),
        feature_types=list(FEATURE_TYPES),
        enable_categorical=True,
    )
    params = {"objective": "binary:logistic", "max_depth": 6, "nthread": 1, "tree_method": "hist"}
    booster = xgb.train(params, dm, num_boost_round=300)

    t_brute = best_of(args.repeat, lambda: brute_sims(u, bank, cls, own))
    t_sums = best_of(
        args.repeat, lambda: build_pair_features(vp, sp, se, cls, bank, own, max_sim=False)
    )
    t_max = best_of(args.repeat, lambda: build_pair_features(vp, sp, se, cls, bank, own))
    t_gbm = best_of(args.repeat, lambda: predict_pairs(booster, pm))
    pairs = s * k
    per_class = n / c
    print(
        f"S={s} segments x K={k} classes = {pairs} pairs; bank N={n} entries "
        f"(~{per_class:.0f} per class), D={d}, C={c}; best of {args.repeat}"
    )
    print(f"max |sums - brute force| = {err:.2e}")
    rows = [
        ("brute SIM sums", t_brute),
        ("build (sums only)", t_sums),
        ("build (with max)", t_max),
        ("xgboost predict", t_gbm),
    ]
    for name, t in rows:
        print(f"{name:<20} {t * 1e3:9.3f} ms  {t * 1e6 / pairs:8.2f} us/pair")
    print(f"ratio brute SIM sums / build (sums only): {t_brute / t_sums:.2f}x")
    print(f"ratio build (with max) / build (sums only): {t_max / t_sums:.2f}x")
    print(f"ratio xgboost predict / build (with max): {t_gbm / t_max:.2f}x")


if __name__ == "__main__":
    main()
