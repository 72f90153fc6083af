"""Which entries of a class the max-cosine features scan: a deterministic sample by key hash.

For a request about video v, class c's max cosine is taken over the ``cap`` entries of each label
(positive, negative) of c whose key hash (of video id and start) is smallest *among the entries of
other videos*: a uniform sample that does not depend on the order labels arrived in, nor on v's own
labels (no leakage), and is every entry below the cap, so the feature is exact there.

A class keeps, per label, the ``keep = SAMPLE_KEEP * cap`` smallest hashes (row indices only) and
the embeddings of the first ``cap`` (its *head*, what a video with no entry in the class scans). A
video with entries in the head scans the head without them, topped up from the rest of the kept
indices; only when those run out (a video with more than ``keep - cap`` entries of one label in the
class) is the class's whole label group searched, which costs O(n_c), not O(N). Pure functions on
arrays here; :mod:`service.bank_class` holds the rows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
U64 = npt.NDArray[np.uint64]

SAMPLE_KEEP = 3
"""Indices kept per (class, label): this many times the cap (the head plus a top-up reserve)."""


def keep_of(cap: int) -> int:
    """How many sample indices a group keeps for a scan cap."""
    return max(cap, 0) * SAMPLE_KEEP


def bottom(hashes: U64, cand: I64, k: int) -> I64:
    """The ``k`` entries of ``cand`` (indices into ``hashes``) with the smallest hash, in hash
    order: int64 [min(k, len(cand))]."""
    cand = np.asarray(cand, np.int64)
    if k <= 0:
        return cand[:0]
    if len(cand) > k:
        cand = cand[np.argpartition(hashes[cand], k - 1)[:k]]
    return cand[np.argsort(hashes[cand], kind="stable")]


def merge(hashes: U64, sample: I64, new: I64, k: int) -> I64:
    """A group's sample after adding entries ``new``: O(k + len(new))."""
    if not len(new):
        return sample
    return bottom(hashes, np.concatenate([sample, new]), k)


def head_first(hashes: U64, labels: I8, cap: int) -> I64:
    """int64 [<= 2 cap]: the positives' then the negatives' head (hash order), for laying a
    class's rows out so that its head is a contiguous view."""
    parts = [bottom(hashes, np.flatnonzero(labels == lab), cap) for lab in (1, 0)]
    return np.concatenate(parts).astype(np.int64)


def without_own(
    hashes: U64, sample: I64, own: I64, cap: int, group: I64 | None = None
) -> tuple[I64, bool]:
    """The ``cap`` smallest-hash entries of a group other than ``own``: (indices, exact).

    ``sample`` is the group's kept indices in hash order. When removing ``own`` leaves fewer than
    ``cap`` of them but the group had more (``len(sample) == keep``), the result is exact only
    with ``group`` (all the group's live indices); without it ``exact`` is False."""
    kept = sample[~np.isin(sample, own)]
    if len(kept) >= cap or len(sample) < keep_of(cap):
        return kept[:cap], True
    if group is None:
        return kept, False
    return bottom(hashes, group[~np.isin(group, own)], cap), True
