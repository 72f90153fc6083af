"""One class's labelled entries, kept so that a write of n entries costs O(n D) (numpy only).

A class holds its entries in a :class:`_Rows` generation: embedding rows in fixed blocks (the first
block may be a view of a loaded array, so loading copies nothing), and per-row metadata (label,
start, a key hash, the version the row died at). Rows are only ever appended; a relabel or a
removal marks the old row dead at the new version. A :class:`ClassView` is one immutable version of
the class: the number of rows it sees, its version, its unit-vector sums and counts and its
max-cosine scan sample. A reader holding an older view keeps seeing exactly that version, because
a row is alive for a view when ``row < view.n`` and ``dead_at[row] > view.version``, and neither
the rows below ``view.n`` nor the values it reads ever change under it.

Costs: a write of n entries to class c is O(n D) for the sums and the rows, O(m D) for the scan
sample (m = the scan cap), plus O(n) dict work; growing the metadata arrays copies O(n_c) bytes now
and then (amortized O(1) per row, no D factor). When dead rows outnumber live ones (plus a slack)
the generation is rewritten with the live rows only: O(n_c D), paid for by the removals.

The scan sample (:mod:`service.bank_sample`): the max-cosine features scan at most ``cap``
positive and ``cap`` negative entries per class, the ones of other videos whose key hash (of video
id and start) is smallest: a deterministic uniform sample that does not depend on the order labels
arrived in nor on the scored video's own labels. Below the cap every entry is scanned, so the
feature is exact there. A view keeps the sample's row indices and the embeddings of its head.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service import bank_sample as bs

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
U64 = npt.NDArray[np.uint64]

NEVER = np.iinfo(np.int64).max
"""``dead_at`` of a live row."""

BLOCK_ROWS = 64
"""Rows per embedding block after the first (appends never copy older rows)."""

COMPACT_SLACK = 64
"""A generation is rewritten when its dead rows exceed its live rows plus this."""

_EMPTY_ROWS = np.zeros(0, np.int64)


def video_hash(video: str) -> int:
    """A stable 64-bit hash of a video id (blake2b, not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.blake2b(video.encode(), digest_size=8).digest(), "little")


def key_hashes(vhash: npt.ArrayLike, starts: npt.ArrayLike) -> U64:
    """uint64 [n] hashes of (video, start) keys from the videos' hashes and starts (splitmix64)."""
    with np.errstate(over="ignore"):
        x = np.asarray(vhash, np.uint64) ^ (
            np.asarray(starts, np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        )
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return np.asarray(x ^ (x >> np.uint64(31)), np.uint64)


class _Rows:
    """The append-only rows of one class generation (shared by its views; see the module doc)."""

    __slots__ = (
        "block_starts",
        "blocks",
        "by_video",
        "dead_at",
        "dim",
        "hash",
        "label",
        "lock",
        "n",
        "start",
        "tip",
        "video",
    )

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.blocks: list[F32] = []
        self.block_starts: list[int] = []
        self.n = 0
        self.label: I8 = np.zeros(0, np.int8)
        self.start: I64 = np.zeros(0, np.int64)
        self.hash: U64 = np.zeros(0, np.uint64)
        self.dead_at: I64 = np.zeros(0, np.int64)
        self.video: list[str] = []
        self.by_video: dict[str, tuple[int, ...]] = {}
        self.tip = 0
        self.lock = threading.Lock()

    def _capacity(self) -> int:
        return 0 if not self.blocks else self.block_starts[-1] + len(self.blocks[-1])

    def _grow_meta(self, need: int) -> None:
        cap = len(self.label)
        if need <= cap:
            return
        new = max(need, 2 * cap, 16)
        for name, fill in (("label", 0), ("start", 0), ("hash", 0), ("dead_at", NEVER)):
            old = getattr(self, name)
            arr = np.full(new, fill, dtype=old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)  # readers of older views keep the old array: same prefix

    def append(
        self, emb: F32, label: I8, start: I64, videos: Sequence[str], hashes: U64, *, own: bool
    ) -> int:
        """Append n rows (emb float32 [n, D] unit rows); returns the first new row.

        With ``own`` the (contiguous) ``emb`` becomes a block as is (no copy)."""
        n = int(emb.shape[0])
        first = self.n
        self._grow_meta(first + n)
        if own and self._capacity() == first:
            self.block_starts.append(first)
            self.blocks.append(emb)
        else:
            done = 0
            while done < n:
                cap = self._capacity()
                if cap == self.n + done:
                    self.block_starts.append(cap)
                    # np.empty: rows past n are never read
                    self.blocks.append(np.empty((BLOCK_ROWS, self.dim), np.float32))
                blk, off = self.blocks[-1], self.n + done - self.block_starts[-1]
                take = min(n - done, len(blk) - off)
                blk[off : off + take] = emb[done : done + take]
                done += take
        sl = slice(first, first + n)
        self.label[sl] = label
        self.start[sl] = start
        self.hash[sl] = hashes
        self.dead_at[sl] = NEVER
        self.video.extend(videos)
        self.n = first + n
        return first

    def emb_rows(self, rows: I64) -> F32:
        """float32 [len(rows), D]: the embeddings of these rows (a copy)."""
        out = np.empty((len(rows), self.dim), np.float32)
        if not len(rows):
            return out
        bi = np.searchsorted(np.asarray(self.block_starts), rows, side="right") - 1
        for b in np.unique(bi).tolist():
            sel = bi == b
            out[sel] = self.blocks[b][rows[sel] - self.block_starts[b]]
        return out

    def alive(self, n: int, version: int) -> npt.NDArray[np.bool_]:
        """bool [n]: which of the first n rows are alive for a view at ``version``."""
        return self.dead_at[:n] > version


@dataclass(frozen=True)
class ClassView:
    """One immutable version of a class's entries.

    Attributes:
        rows: the generation the view reads (None for a class without rows).
        n: rows of the generation this view sees.
        version: the class-local version (rows dead at a later version are alive here).
        pos_sum: float64 [D], sum of the unit embeddings of the live positives.
        neg_sum: float64 [D], the same for the negatives.
        pos_n: live positives.
        neg_n: live negatives.
        dead: dead rows among the first ``n``.
        sample_pos: int64 [<= keep], the live positives with the smallest key hashes, in hash
            order (:mod:`service.bank_sample`); all of them when there are fewer than ``keep``.
        sample_neg: int64 [<= keep], the same for the negatives.
        head_pos: positives in :attr:`scan` (``min(cap, len(sample_pos))``).
        scan: float32 [head_pos + head_neg, D], the embeddings of the first ``cap`` of each sample
            (positives first): what the max cosine scans for a video with no entry among them.
    """

    rows: _Rows | None
    n: int
    version: int
    pos_sum: F64
    neg_sum: F64
    pos_n: int
    neg_n: int
    dead: int
    sample_pos: I64
    sample_neg: I64
    head_pos: int
    scan: F32

    @property
    def live(self) -> int:
        return self.pos_n + self.neg_n

    @property
    def scan_rows(self) -> I64:
        """int64 [len(scan)]: the rows of :attr:`scan`, positives first."""
        head_neg = len(self.scan) - self.head_pos
        return np.concatenate([self.sample_pos[: self.head_pos], self.sample_neg[:head_neg]])

    def live_rows(self) -> I64:
        """int64 [live]: the live rows, in row order."""
        if self.rows is None:
            return _EMPTY_ROWS
        return np.flatnonzero(self.rows.alive(self.n, self.version)).astype(np.int64)

    def video_rows(self, video: str | None) -> I64:
        """int64 [k]: the live rows of ``video`` in this view (a handful)."""
        if video is None or self.rows is None:
            return _EMPTY_ROWS
        rows = self.rows
        cand = [r for r in rows.by_video.get(video, ()) if r < self.n]
        if not cand:
            return _EMPTY_ROWS
        arr = np.asarray(cand, np.int64)
        return arr[rows.dead_at[arr] > self.version]

    def find(self, video: str, starts: Sequence[int]) -> I64:
        """int64 [len(starts)]: the live row of each (video, start), -1 where there is none."""
        out = np.full(len(starts), -1, np.int64)
        own = self.video_rows(video)
        if own.size and self.rows is not None:
            at = {
                int(s): int(r)
                for s, r in zip(self.rows.start[own].tolist(), own.tolist(), strict=True)
            }
            for i, s in enumerate(starts):
                out[i] = at.get(int(s), -1)
        return out


def empty_view(dim: int) -> ClassView:
    """The view of a class without entries."""
    z = np.zeros(dim, np.float64)
    z.setflags(write=False)
    return ClassView(
        None, 0, 0, z, z, 0, 0, 0, _EMPTY_ROWS, _EMPTY_ROWS, 0, np.zeros((0, dim), np.float32)
    )


def build_view(
    emb: F32, label: I8, start: I64, videos: Sequence[str], hashes: U64, cap: int
) -> ClassView:
    """A class from its entries (unit rows float32 [n, D], keys unique): O(n D).

    The rows are laid out head first (the positives' then the negatives' scan head, by hash; then
    the rest in their order), so the scan is a view of the rows, not a copy. Entries already in
    that order (a bank written by :meth:`ClassBank.save`) are not copied."""
    dim = int(emb.shape[1])
    if not len(label):
        return empty_view(dim)
    head = bs.head_first(hashes, label, cap)
    if not np.array_equal(head, np.arange(len(head))):
        rest = np.setdiff1d(np.arange(len(label)), head, assume_unique=True)
        perm = np.concatenate([head, rest])
        emb, label, start, hashes = emb[perm], label[perm], start[perm], hashes[perm]
        videos = [videos[i] for i in perm.tolist()]
    emb = np.ascontiguousarray(emb, np.float32)
    rows = _Rows(dim)
    rows.append(emb, label, start, videos, hashes, own=True)
    by_video: dict[str, list[int]] = {}
    for r, v in enumerate(videos):
        by_video.setdefault(v, []).append(r)
    rows.by_video = {v: tuple(rs) for v, rs in by_video.items()}
    pos = label == 1
    n_pos = int(pos.sum())
    keep = bs.keep_of(cap)
    sp = bs.bottom(hashes, np.flatnonzero(pos), keep)
    sn = bs.bottom(hashes, np.flatnonzero(~pos), keep)
    hp = min(cap, len(sp))
    return ClassView(
        rows, rows.n, 0,
        emb[pos].sum(axis=0, dtype=np.float64) if n_pos else np.zeros(dim),
        emb[~pos].sum(axis=0, dtype=np.float64) if n_pos < len(label) else np.zeros(dim),
        n_pos, len(label) - n_pos, 0, sp, sn, hp, emb[: hp + min(cap, len(sn))],
    )  # fmt: skip


def _with_sample(
    view: ClassView,
    cap: int,
    *,
    rebuild: tuple[bool, bool],
    new_rows: I64,
    new_emb: F32 | None = None,
) -> ClassView:
    """``view`` with its scan sample updated: groups in ``rebuild`` (pos, neg) from all live rows
    (O(n_c), only when a kept row died), the others by merging ``new_rows`` (O(keep + n))."""
    rows = view.rows
    if rows is None or cap <= 0:
        return view
    keep = bs.keep_of(cap)
    samples = []
    for label, full, old in ((1, rebuild[0], view.sample_pos), (0, rebuild[1], view.sample_neg)):
        if full:
            live = rows.alive(view.n, view.version) & (rows.label[: view.n] == label)
            samples.append(bs.bottom(rows.hash, np.flatnonzero(live), keep))
        else:
            samples.append(bs.merge(rows.hash, old, new_rows[rows.label[new_rows] == label], keep))
    sp, sn = samples
    if sp is view.sample_pos and sn is view.sample_neg:
        return view
    hp = min(cap, len(sp))
    head = np.concatenate([sp[:hp], sn[:cap]])
    if np.array_equal(head, view.scan_rows):
        return _replace(view, sample_pos=sp, sample_neg=sn)
    scan = _head_rows(view, head, new_rows, new_emb)
    return _replace(view, sample_pos=sp, sample_neg=sn, head_pos=hp, scan=scan)


def _head_rows(view: ClassView, head: I64, new_rows: I64, new_emb: F32 | None) -> F32:
    """float32 [len(head), D]: the head's embeddings, taken from the old head and the rows just
    written when they have them all (no gather from the blocks), else gathered."""
    rows = view.rows
    assert rows is not None
    if new_emb is None or len(new_emb) != len(new_rows):
        return rows.emb_rows(head)
    keys = np.concatenate([view.scan_rows, new_rows])
    order = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys[order], head), len(keys) - 1)
    if not np.array_equal(keys[order][pos], head):
        return rows.emb_rows(head)
    return np.concatenate([view.scan, new_emb])[order[pos]]


def scan_without(view: ClassView, own: I64, cap: int) -> tuple[F32, F32]:
    """The embeddings a video with live rows ``own`` in this class scans: its ``cap`` smallest-hash
    positives and negatives of other videos: (float32 [<= cap, D], float32 [<= cap, D])."""
    rows = view.rows
    assert rows is not None
    out = []
    for label, sample in ((1, view.sample_pos), (0, view.sample_neg)):
        kept, exact = bs.without_own(rows.hash, sample, own, cap)
        if not exact:  # the video has more entries of this label than the reserve: search all
            live = rows.alive(view.n, view.version) & (rows.label[: view.n] == label)
            kept, _ = bs.without_own(rows.hash, sample, own, cap, np.flatnonzero(live))
        out.append(rows.emb_rows(kept))
    return out[0], out[1]


def _replace(view: ClassView, **kw: object) -> ClassView:
    from dataclasses import replace

    return replace(view, **kw)  # type: ignore[arg-type]


def _is_tip(view: ClassView) -> bool:
    """Whether ``view`` is the newest version of its generation (so writes may append in place)."""
    rows = view.rows
    return rows is not None and rows.tip == view.version and rows.n == view.n


def put(
    view: ClassView,
    emb: F32,
    label: I8,
    start: I64,
    videos: Sequence[str],
    vhash: Sequence[int],
    cap: int,
) -> tuple[ClassView, int]:
    """The class with n entries put (unit rows float32 [n, D], keys unique within the batch); an
    entry whose (video, start) is already live replaces it. Returns (view, entries replaced).

    Writing to an older view than the newest of its generation branches: its live rows are copied
    into a new generation first (O(n_c D); the stores never do this, they write to the newest)."""
    n = int(label.shape[0])
    if n == 0:
        return view, 0
    hashes = key_hashes(np.asarray(vhash, np.uint64), start)
    rows = view.rows
    if rows is None:
        return build_view(np.array(emb, np.float32), label, start, videos, hashes, cap), 0
    with rows.lock:
        if _is_tip(view):
            killed = _killed_rows(view, videos, start)
            version = view.version + 1
            rows.dead_at[killed] = version
            first = rows.append(emb, label, start, videos, hashes, own=False)
            for i, v in enumerate(videos):
                rows.by_video[v] = (*rows.by_video.get(v, ()), first + i)
            rows.tip = version
            n_rows = rows.n
        else:
            first = -1
    if first < 0:
        return put(compact(view, cap), emb, label, start, videos, vhash, cap)
    new_rows = np.arange(first, first + n, dtype=np.int64)
    out = _account(view, version, n_rows, new_rows, killed, added_emb=emb)
    return _finish(out, cap, _sample_hit(view, killed), new_rows, emb), len(killed)


def _killed_rows(view: ClassView, videos: Sequence[str], start: I64) -> I64:
    """int64 [k]: the live rows whose (video, start) is among the batch's keys."""
    killed: list[int] = []
    by_start: dict[str, set[int]] = {}
    for v, s in zip(videos, start.tolist(), strict=True):
        by_start.setdefault(v, set()).add(int(s))
    for v, ss in by_start.items():
        own = view.video_rows(v)
        if own.size:
            assert view.rows is not None
            hit = np.isin(view.rows.start[own], np.fromiter(ss, np.int64))
            killed.extend(own[hit].tolist())
    return np.asarray(killed, np.int64)


def _account(
    view: ClassView, version: int, n: int, added: I64, killed: I64, added_emb: F32 | None = None
) -> ClassView:
    """Sums and counts after adding rows ``added`` (embeddings ``added_emb`` when at hand) and
    killing rows ``killed``: O((|a| + |k|) D)."""
    rows = view.rows
    assert rows is not None
    pos_sum, neg_sum = view.pos_sum.copy(), view.neg_sum.copy()
    pos_n, neg_n = view.pos_n, view.neg_n
    for sel, sign, at_hand in ((added, 1, added_emb), (killed, -1, None)):
        if not sel.size:
            continue
        e = (rows.emb_rows(sel) if at_hand is None else at_hand).astype(np.float64)
        is_pos = rows.label[sel] == 1
        pos_sum += sign * e[is_pos].sum(axis=0)
        neg_sum += sign * e[~is_pos].sum(axis=0)
        pos_n += sign * int(is_pos.sum())
        neg_n += sign * int((~is_pos).sum())
    return _replace(
        view, n=n, version=version, pos_sum=pos_sum, neg_sum=neg_sum, pos_n=pos_n, neg_n=neg_n,
        dead=view.dead + int(killed.size),
    )  # fmt: skip


def _sample_hit(view: ClassView, killed: I64) -> tuple[bool, bool]:
    """Whether a killed row was among the kept positive / negative sample indices."""
    if not killed.size:
        return (False, False)
    return (
        bool(np.isin(killed, view.sample_pos).any()),
        bool(np.isin(killed, view.sample_neg).any()),
    )


def _finish(
    view: ClassView,
    cap: int,
    rebuild: tuple[bool, bool],
    new_rows: I64,
    new_emb: F32 | None = None,
) -> ClassView:
    """Update the scan sample, then rewrite the generation when dead rows dominate."""
    view = _with_sample(view, cap, rebuild=rebuild, new_rows=new_rows, new_emb=new_emb)
    if view.dead > view.live + COMPACT_SLACK:
        return compact(view, cap)
    return view


def remove(view: ClassView, video: str, starts: Sequence[int], cap: int) -> tuple[ClassView, I8]:
    """The class without the live entries (video, start) for ``starts``; returns (view, the removed
    entries' labels int8 [len(starts)], -1 where there was no such entry)."""
    found = view.find(video, starts)
    labels = np.full(len(starts), -1, np.int8)
    rows = view.rows
    if rows is None or not (found >= 0).any():
        return view, labels
    killed = found[found >= 0]
    labels[found >= 0] = rows.label[killed]
    with rows.lock:
        tip = _is_tip(view)
        if tip:
            version = view.version + 1
            rows.dead_at[killed] = version
            rows.tip = version
    if not tip:
        return remove(compact(view, cap), video, starts, cap)
    out = _account(view, version, view.n, _EMPTY_ROWS, killed)
    return _finish(out, cap, _sample_hit(view, killed), _EMPTY_ROWS), labels


def compact(view: ClassView, cap: int) -> ClassView:
    """The class rewritten with its live rows only (a new generation, exact sums): O(n_c D)."""
    rows = view.rows
    if rows is None:
        return view
    live = view.live_rows()
    if not live.size:
        return empty_view(rows.dim)
    return build_view(
        rows.emb_rows(live),
        rows.label[live].copy(),
        rows.start[live].copy(),
        [rows.video[r] for r in live.tolist()],
        rows.hash[live].copy(),
        cap,
    )


def entries(view: ClassView) -> tuple[F32, I8, I64, list[str]]:
    """The live entries in row order: (emb float32 [k, D], label int8 [k], start int64 [k],
    video ids)."""
    rows = view.rows
    if rows is None:
        return (
            np.zeros((0, view.pos_sum.shape[0]), np.float32),
            np.zeros(0, np.int8),
            _EMPTY_ROWS,
            [],
        )
    live = view.live_rows()
    return (
        rows.emb_rows(live),
        rows.label[live].copy(),
        rows.start[live].copy(),
        [rows.video[r] for r in live.tolist()],
    )
