"""The self-check a bundle must pass before it serves: one blank video through every part.

Loading a bundle verifies its files (every sha256 of the manifest, :mod:`service.bundle`); the
self-check then proves the parts work together: the candidate graph runs on frames of the right
width, its segment embeddings have the bank's width, the booster scores the pair matrix built from
them, and every score is finite (and a probability for a logistic objective; the ranking
objectives score margins). A bundle that fails it never becomes ready (at
start-up) and is refused by a hot reload (:mod:`service.api.reload`), naming the part that failed.
"""

from __future__ import annotations

import numpy as np

from service.bank import ClassBank
from service.review import LOGISTIC_OBJECTIVES, objective_name
from service.scorer import Scorer
from service.yt8m import FEATURE_DIM, SEGMENT_FRAMES

CHECKS = ("candidate", "bank", "booster")
"""The parts a ready model has: the candidate graph, the bank and the booster, in that order."""


class SelfCheckError(RuntimeError):
    """A part of the bundle failed the self-check; the message names it."""


def self_check(scorer: Scorer, bank: ClassBank, *, segments: int = 2) -> dict[str, str]:
    """Score a blank video (``segments`` x 5 frames of zeros, float32 [F, 1152]).

    Returns:
        part -> what was checked, for each of :data:`CHECKS`.

    Raises:
        SelfCheckError: naming the part that failed and why.
    """
    frames = np.zeros((segments * SEGMENT_FRAMES, FEATURE_DIM), dtype=np.float32)
    try:
        cand = scorer.run_candidate(frames)
    except Exception as e:  # onnxruntime raises its own types
        raise SelfCheckError(f"candidate: the graph does not run on [F, {FEATURE_DIM}]: {e}") from e
    emb = cand.segment_embeddings
    if cand.video_probs.shape != (scorer.num_classes,) or emb.shape[0] != segments:
        raise SelfCheckError(
            f"candidate: outputs video_probs {cand.video_probs.shape}, embeddings {emb.shape}; "
            f"expected ({scorer.num_classes},) and ({segments}, D)"
        )
    if bank.num_classes != scorer.num_classes or bank.dim != emb.shape[1]:
        raise SelfCheckError(
            f"bank: {bank.num_classes} classes x {bank.dim} dims, the candidate model "
            f"{scorer.num_classes} classes x {emb.shape[1]} dims"
        )
    classes = [int(np.argmax(cand.video_probs))]
    try:
        out = scorer.localize(frames, bank, classes=classes, max_segments=segments)
    except Exception as e:  # xgboost raises its own types
        raise SelfCheckError(f"booster: cannot score the pair matrix ({e})") from e
    scores = out.scores
    if scores.shape != (1, segments) or not np.all(np.isfinite(scores)):
        raise SelfCheckError(f"booster: scores {scores.tolist()} are not {segments} finite values")
    objective = objective_name(scorer.bundle.booster)
    if objective in LOGISTIC_OBJECTIVES and not np.all((scores >= 0) & (scores <= 1)):
        raise SelfCheckError(
            f"booster: scores {scores.tolist()} are not probabilities ({objective})"
        )
    return {
        "candidate": f"{scorer.num_classes} classes, embeddings of {emb.shape[1]} dims",
        "bank": f"{bank.num_classes} classes x {bank.dim} dims, {len(bank)} segments",
        "booster": f"{out.num_pairs} pairs scored",
    }
