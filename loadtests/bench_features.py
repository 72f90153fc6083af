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

and the ratios between them, plus the cost of the default features (with max) at N against a bank
of ``--small`` entries (1,000): the max cosine scans at most ``scan_cap`` entries per class and
label, so this ratio stays near 1 whatever N. Nothing here is asserted: it prints what it measures.
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


def synthetic_bank(n: int, c: int, d: int, seed: int) -> ClassBank:
    """N random labelled entries over C classes, 5 per video (float32 [N, D], made in blocks)."""
    rng = np.random.default_rng(seed)
    emb = np.empty((n, d), np.float32)
    for i in range(0, n, 100_000):
        emb[i : i + 100_000] = rng.standard_normal((min(100_000, n - i), d), dtype=np.float32)
    return ClassBank.from_entries(
        emb,
        rng.integers(0, c, n),
        rng.integers(0, 2, n),
        [f"v{i // 5}" for i in range(n)],
        (np.arange(n) % 5) * 5,
        num_classes=c,
    )


def feature_cost(bank: ClassBank, s: int, k: int, repeat: int, seed: int = 0) -> float:
    """Best-of seconds of ``build_pair_features`` with the default features (max cosine on) for
    one video of S segments and its K best classes, excluding a video that is in the bank."""
    rng = np.random.default_rng(seed)
    c, d = bank.num_classes, bank.dim
    vp = rng.random(c).astype(np.float32)
    sp = rng.random((s, c)).astype(np.float32)
    se = rng.normal(size=(s, d)).astype(np.float32)
    cls = np.argsort(-vp)[:k].astype(np.int64)
    return best_of(repeat, lambda: build_pair_features(vp, sp, se, cls, bank, "v0"), warmup=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bank", type=int, default=200_000, help="labelled bank entries N")
    ap.add_argument("--classes", type=int, default=1000, help="vocabulary size C")
    ap.add_argument("--dim", type=int, default=256, help="embedding dim D")
    ap.add_argument("--segments", type=int, default=60, help="segments per video S")
    ap.add_argument("--candidates", type=int, default=20, help="candidate classes per video K")
    ap.add_argument("--small", type=int, default=1000, help="the small bank to compare with")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    c, d, s, k, n = args.classes, args.dim, args.segments, args.candidates, args.bank
    bank = synthetic_bank(n, c, d, args.seed)
    vp = rng.random(c).astype(np.float32)
    sp = rng.random((s, c)).astype(np.float32)
    se = rng.normal(size=(s, d)).astype(np.float32)
    cls = np.argsort(-vp)[:k].astype(np.int64)
    own = "v0"

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
    small = synthetic_bank(args.small, c, d, args.seed + 1)
    t_big = feature_cost(bank, s, k, args.repeat, args.seed)
    t_small = feature_cost(small, s, k, args.repeat, args.seed)
    print(
        f"ratio build (with max) bank {n} / bank {args.small}: {t_big / t_small:.2f}x "
        f"(scan cap {bank.scan_cap} entries per class and label)"
    )


if __name__ == "__main__":
    main()
