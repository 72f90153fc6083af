"""The labelled-embedding bank of CCRL as immutable snapshots with O(n D) writes (numpy only).

A :class:`ClassBank` is a tuple of per-class :class:`~service.bank_class.ClassView` plus the
per-class counts. It is never changed in place: :meth:`ClassBank.add`, :meth:`ClassBank.put` and
:meth:`ClassBank.remove` return a new snapshot that shares every untouched class (and the rows of
the touched one) with the old, at a cost of O(n D) for n entries plus O(C) pointers, whatever the
bank's size. A request keeps the snapshot it started with.

The similarity features read it through :meth:`ClassBank.other_video_sums` (per-class unit-vector
sums and counts with the video's own entries subtracted, the paper's u != v) and
:meth:`ClassBank.max_cosine` (the max cosine over at most ``scan_cap`` positives and negatives per
class, see :mod:`service.bank_class`). The flat arrays of ``bank.npz`` (docs/contracts.md) are
built on demand (:meth:`ClassBank.arrays`), for files and training only.

Memory: each entry costs its float32 embedding (4 D bytes) plus about 40 bytes of metadata
(label, start, key hash, death version, video reference, index slot); 1,000 entries at D = 1,152
are about 4.7 MB in process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service import bank_class as bc
from service.bank_class import ClassView

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]

MAX_SIM_CAP = 6
"""Default entries per (class, label) that the max-cosine features scan (exact below it)."""

_NO_ROWS = np.zeros(0, np.int64)

ARRAYS = (
    "pos_sum",
    "neg_sum",
    "pos_count",
    "neg_count",
    "emb",
    "emb_class",
    "emb_label",
    "emb_video",
    "emb_start",
)
"""The arrays of ``bank.npz``."""


def unit_rows(x: npt.ArrayLike) -> F32:
    """Rows scaled to unit L2 norm: float32 [N, D] -> float32 [N, D]; all-zero rows stay zero."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-d array of embeddings, got shape {a.shape}")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)


class NotInBank(LookupError):
    """A removal named entries the class does not have (nothing was removed)."""

    def __init__(self, class_id: int, video_id: str, starts: Sequence[int]) -> None:
        super().__init__(
            f"class {class_id} has no label for video {video_id!r} at start"
            f"{'s' if len(starts) > 1 else ''} {', '.join(str(s) for s in starts)} "
            "(nothing was removed)"
        )
        self.class_id = class_id
        self.video_id = video_id
        self.starts = list(starts)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class ClassBank:
    """An immutable snapshot of the bank: C classes of labelled D-dim unit embeddings.

    Attributes:
        pos_count: int64 [C] (read-only), live positive entries per class.
        neg_count: int64 [C] (read-only), live negative entries per class.
        scan_cap: entries per (class, label) the max-cosine features scan.
    """

    ARRAYS = ARRAYS

    def __init__(
        self,
        views: Sequence[ClassView],
        dim: int,
        *,
        scan_cap: int = MAX_SIM_CAP,
        counts: tuple[I64, I64] | None = None,
    ) -> None:
        self._views: tuple[ClassView, ...] = tuple(views)
        self._dim = int(dim)
        self.scan_cap = int(scan_cap)
        if counts is None:
            counts = (
                np.asarray([v.pos_n for v in self._views], np.int64),
                np.asarray([v.neg_n for v in self._views], np.int64),
            )
        self.pos_count: I64 = _frozen(counts[0])
        self.neg_count: I64 = _frozen(counts[1])
        self._len = int(self.pos_count.sum() + self.neg_count.sum())
        self._cache: dict[str, Any] = {}

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled (by Dask, sending the bank to workers) as its flat arrays, rebuilt on arrival
        into the same classes and scan samples (the rows' locks cannot travel)."""
        return (_unpickle, (self.arrays(), self.scan_cap))

    # ------------------------------------------------------------------ shape
    @property
    def num_classes(self) -> int:
        return len(self._views)

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return self._len

    def view(self, class_id: int) -> ClassView:
        """The immutable view of one class."""
        return self._views[class_id]

    # ------------------------------------------------------------------ building
    @classmethod
    def empty(cls, num_classes: int, dim: int, *, scan_cap: int = MAX_SIM_CAP) -> ClassBank:
        """A bank with no entries: C classes, D-dimensional embeddings."""
        e = bc.empty_view(dim)
        return cls([e] * num_classes, dim, scan_cap=scan_cap)

    @classmethod
    def from_entries(
        cls,
        embeddings: npt.ArrayLike,
        classes: Iterable[int] | npt.ArrayLike,
        labels: Iterable[float] | npt.ArrayLike,
        videos: Sequence[str] | npt.ArrayLike,
        starts: Iterable[int] | npt.ArrayLike,
        *,
        num_classes: int,
        scan_cap: int = MAX_SIM_CAP,
    ) -> ClassBank:
        """Build a bank from labelled entries (a later entry with the same key wins).

        Args:
            embeddings: float [N, D] segment embeddings (normalized here to unit length).
            classes: int [N] class ids in ``[0, num_classes)``.
            labels: [N] 1 (positive) or 0 (negative); scores >= 0.5 count as positive.
            videos: [N] video ids.
            starts: int [N] segment start frames.
            num_classes: C, the vocabulary size.
            scan_cap: entries per (class, label) the max-cosine features scan.
        """
        e = unit_rows(embeddings)
        c, lab, vid, st = _entry_arrays(e.shape[0], classes, labels, videos, starts, num_classes)
        order = np.argsort(c, kind="stable")
        if not np.array_equal(order, np.arange(len(order))):
            e, c, lab, st, vid = e[order], c[order], lab[order], st[order], vid[order]
        return _build_sorted(e, c, lab, vid, st, num_classes, scan_cap)

    # ------------------------------------------------------------------ writes
    def with_views(self, changed: Mapping[int, ClassView]) -> ClassBank:
        """A new snapshot with these classes replaced: O(C) pointers plus the changed views."""
        if not changed:
            return self
        views = list(self._views)
        pos, neg = self.pos_count.copy(), self.neg_count.copy()
        for c, v in changed.items():
            views[c] = v
            pos[c], neg[c] = v.pos_n, v.neg_n
        return ClassBank(views, self._dim, scan_cap=self.scan_cap, counts=(pos, neg))

    def put_view(
        self, class_id: int, emb: F32, labels: I8, starts: I64, videos: Sequence[str]
    ) -> tuple[ClassView, int]:
        """Class ``class_id``'s view with these entries put (unit rows float32 [n, D], keys unique):
        (view, entries replaced). The snapshot itself is not changed."""
        vh = _video_hashes(videos)
        return bc.put(self._views[class_id], emb, labels, starts, list(videos), vh, self.scan_cap)

    def put(
        self, class_id: int, embeddings: npt.ArrayLike, labels: npt.ArrayLike, video: str,
        starts: npt.ArrayLike,
    ) -> tuple[ClassBank, int]:  # fmt: skip
        """The bank with labelled segments of one video put into one class: (bank, replaced).

        embeddings float [n, D] (normalized here), labels [n] 1/0, starts int [n] unique."""
        e = unit_rows(embeddings)
        if e.shape[1] != self._dim:
            raise ValueError(f"bank entries: embedding dim {e.shape[1]}, the bank's is {self._dim}")
        lab = (np.asarray(labels, np.float64) >= 0.5).astype(np.int8)
        st = np.asarray(starts, np.int64)
        view, replaced = self.put_view(class_id, e, lab, st, [video] * len(st))
        return self.with_views({class_id: view}), replaced

    def add(
        self,
        embeddings: npt.ArrayLike,
        classes: npt.ArrayLike,
        labels: npt.ArrayLike,
        videos: Sequence[str] | npt.ArrayLike,
        starts: npt.ArrayLike,
    ) -> ClassBank:
        """A new bank with these entries added; an entry with the same (class, video, start) as an
        existing one replaces it (a relabel). O(n D) for n entries, whatever the bank's size."""
        e = unit_rows(embeddings)
        if e.shape[0] and e.shape[1] != self._dim:
            raise ValueError(f"bank entries: embedding dim {e.shape[1]}, the bank's is {self._dim}")
        c, lab, vid, st = _entry_arrays(
            e.shape[0], classes, labels, videos, starts, self.num_classes
        )
        keep = _last_of_each_key(c, vid, st)
        changed: dict[int, ClassView] = {}
        for cid in np.unique(c[keep]).tolist():
            sel = keep[c[keep] == cid]
            base = changed.get(cid, self._views[cid])
            vids = vid[sel].tolist()
            changed[cid], _ = bc.put(
                base, e[sel], lab[sel], st[sel], vids, _video_hashes(vids), self.scan_cap
            )
        return self.with_views(changed)

    def remove(self, class_id: int, video_id: str, starts: Sequence[int]) -> tuple[ClassBank, I8]:
        """The bank without these entries of one class: (bank, labels int8 [len(starts)] of the
        removed entries, -1 where the class had no such entry)."""
        view, labels = bc.remove(self._views[class_id], video_id, starts, self.scan_cap)
        return self.with_views({class_id: view}), labels

    def without_video(self, video_id: str) -> ClassBank:
        """A new bank without any entry of ``video_id``."""
        changed: dict[int, ClassView] = {}
        for c, v in enumerate(self._views):
            own = v.video_rows(video_id)
            if own.size and v.rows is not None:
                changed[c], _ = bc.remove(v, video_id, v.rows.start[own].tolist(), self.scan_cap)
        return self.with_views(changed)

    # ------------------------------------------------------------------ features
    def other_video_sums(self, classes: I64, video_id: str | None) -> tuple[F64, F64, F64, F64]:
        """Per-class sums of unit vectors and counts of the K classes, without ``video_id``'s own
        entries: (pos_sum float64 [K, D], neg_sum [K, D], pos_n float64 [K], neg_n [K])."""
        views = [self._views[c] for c in classes.tolist()]
        if not views:
            z = np.zeros((0, self._dim))
            return z, z.copy(), np.zeros(0), np.zeros(0)
        pos = np.stack([v.pos_sum for v in views])
        neg = np.stack([v.neg_sum for v in views])
        pos_n = np.asarray([v.pos_n for v in views], np.float64)
        neg_n = np.asarray([v.neg_n for v in views], np.float64)
        if video_id is not None:
            for k, v in enumerate(views):
                own = v.video_rows(video_id)
                if not own.size or v.rows is None:
                    continue
                e = v.rows.emb_rows(own).astype(np.float64)
                is_pos = v.rows.label[own] == 1
                pos[k] -= e[is_pos].sum(axis=0)
                neg[k] -= e[~is_pos].sum(axis=0)
                pos_n[k] -= int(is_pos.sum())
                neg_n[k] -= int((~is_pos).sum())
        return pos, neg, pos_n, neg_n

    def max_cosine(self, u: F32, classes: I64, video_id: str | None) -> tuple[F32, F32]:
        """Max cosine of each unit segment row of ``u`` (float32 [S, D]) to the scanned positives /
        negatives of each class from other videos: two float32 [K, S] (NaN where none).

        A class scans its ``scan_cap`` smallest-hash positives and negatives of other videos
        (:mod:`service.bank_sample`): one matrix product over at most ``2 K scan_cap`` rows, then
        a max over each (class, label) group padded to the longest: O(K cap (D + S))."""
        k, s = len(classes), u.shape[0]
        parts: list[F32] = []
        sizes: list[int] = []  # pos, neg of each class
        for c in classes.tolist():
            v = self._views[c]
            own = v.video_rows(video_id) if video_id is not None else _NO_ROWS
            if own.size and np.isin(v.scan_rows, own).any():
                pos, neg = bc.scan_without(v, own, self.scan_cap)
                parts += [pos, neg]
                sizes += [len(pos), len(neg)]
            else:
                parts.append(v.scan)
                sizes += [v.head_pos, len(v.scan) - v.head_pos]
        lengths = np.asarray(sizes, np.int64)
        total = int(lengths.sum())
        if total == 0 or s == 0:
            out = np.full((2 * k, s), np.nan, dtype=np.float32)
            return out[0::2], out[1::2]
        # float64 products, rounded to float32 after the max: a float32 GEMM's last bits depend on
        # the BLAS thread count and on a row's place in the matrix (which classes were asked for),
        # and a tree split can sit between two neighbouring floats (a 1-thread Dask worker once
        # scored a pair 0.20 where a 2-thread process scored 0.13); a float64 error (~1e-16) moves
        # the rounded float32 value only for about one value in 10^9.
        rows = np.concatenate(parts, out=np.empty((total, u.shape[1]), np.float64))
        sims = np.empty((total + 1, s), np.float64)  # [T + 1, S]; the last row pads the groups
        np.matmul(rows, u.T.astype(np.float64), out=sims[:total])
        sims[total] = -np.inf
        starts = np.cumsum(lengths) - lengths
        at = np.arange(int(lengths.max()))
        idx = np.where(at[None, :] < lengths[:, None], starts[:, None] + at[None, :], total)
        red = sims[idx].max(axis=1).astype(np.float32)  # [2K, S]
        red[~np.isfinite(red)] = np.nan
        return red[0::2], red[1::2]

    # ------------------------------------------------------------------ flat arrays
    def _flat(self) -> dict[str, np.ndarray]:
        """The live entries as flat arrays, class-major (cached: the snapshot never changes)."""
        flat = self._cache.get("flat")
        if flat is None:
            parts = [bc.entries(v) for v in self._views]
            videos = [x for p in parts for x in p[3]]
            flat = {
                "emb": np.concatenate([p[0] for p in parts] or [np.zeros((0, self._dim))]),
                "emb_class": np.repeat(
                    np.arange(len(parts), dtype=np.int64), [len(p[1]) for p in parts]
                ),
                "emb_label": np.concatenate([p[1] for p in parts] or [np.zeros(0)]),
                "emb_video": np.asarray(videos, dtype=np.str_) if videos else np.zeros(0, "<U1"),
                "emb_start": np.concatenate([p[2] for p in parts] or [np.zeros(0)]),
            }
            dtypes = {"emb": np.float32, "emb_label": np.int8, "emb_start": np.int64}
            for name, dt in dtypes.items():
                flat[name] = flat[name].astype(dt, copy=False)
            for a in flat.values():
                a.setflags(write=False)
            self._cache["flat"] = flat
        return flat

    @property
    def emb(self) -> F32:
        """float32 [N, D], every live entry's unit embedding, class-major (built on demand)."""
        return self._flat()["emb"]

    @property
    def emb_class(self) -> I64:
        return self._flat()["emb_class"]

    @property
    def emb_label(self) -> I8:
        return self._flat()["emb_label"]

    @property
    def emb_video(self) -> npt.NDArray[np.str_]:
        return self._flat()["emb_video"]

    @property
    def emb_start(self) -> I64:
        return self._flat()["emb_start"]

    @property
    def pos_sum(self) -> F32:
        """float32 [C, D], the per-class sums of positive unit embeddings (built on demand)."""
        if "pos_sum" not in self._cache:
            self._cache["pos_sum"] = _frozen(
                np.stack([v.pos_sum for v in self._views]).astype(np.float32)
            )
        return self._cache["pos_sum"]

    @property
    def neg_sum(self) -> F32:
        if "neg_sum" not in self._cache:
            self._cache["neg_sum"] = _frozen(
                np.stack([v.neg_sum for v in self._views]).astype(np.float32)
            )
        return self._cache["neg_sum"]

    def video_entries(self, video_id: str | None) -> I64:
        """Indices (int64 [n]) into the flat arrays of the entries of ``video_id``."""
        if video_id is None:
            return np.zeros(0, np.int64)
        return np.flatnonzero(self.emb_video == video_id).astype(np.int64)

    # ------------------------------------------------------------------ files
    def arrays(self) -> dict[str, np.ndarray]:
        """The bank as plain arrays (the ``bank.npz`` layout of docs/contracts.md)."""
        return {name: getattr(self, name) for name in ARRAYS}

    def save(self, path: str | Path) -> Path:
        """Write ``bank.npz`` (uncompressed, no pickled objects, entries class-major)."""
        path = Path(path)
        with path.open("wb") as fh:
            np.savez(fh, **self.arrays())  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: str | Path, *, scan_cap: int = MAX_SIM_CAP) -> ClassBank:
        """Read ``bank.npz`` (``allow_pickle=False``); checks names, shapes and counts."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [n for n in ARRAYS if n not in z.files]
                if missing:
                    raise ValueError(f"missing arrays {missing}")
                a = {n: z[n] for n in ARRAYS}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable bank ({exc})") from exc
        return from_arrays(a, str(path), scan_cap=scan_cap)

    def validate(self, where: str = "bank") -> None:
        """Check the flat arrays' shapes (kept for callers of the old bank)."""
        check_arrays(self.arrays(), where)


def _unpickle(arrays: dict[str, np.ndarray], scan_cap: int) -> ClassBank:
    return from_arrays(arrays, "pickled bank", scan_cap=scan_cap)


def check_arrays(a: Mapping[str, np.ndarray], where: str) -> tuple[int, int, int]:
    """Raise ``ValueError`` naming ``where`` and the array when the ``bank.npz`` arrays' shapes
    disagree; returns (C, D, N)."""
    ps = a["pos_sum"]
    c, d = ps.shape if ps.ndim == 2 else (-1, -1)
    e = a["emb"]
    n = e.shape[0] if e.ndim == 2 else -1
    expected = {
        "pos_sum": (c, d),
        "neg_sum": (c, d),
        "pos_count": (c,),
        "neg_count": (c,),
        "emb": (n, d),
        "emb_class": (n,),
        "emb_label": (n,),
        "emb_video": (n,),
        "emb_start": (n,),
    }
    for name, shape in expected.items():
        got = a[name].shape
        if got != shape or c < 0 or n < 0:
            raise ValueError(f"{where}: array {name} has shape {got}, expected {shape}")
    return c, d, n


def from_arrays(
    a: Mapping[str, np.ndarray], where: str, *, scan_cap: int = MAX_SIM_CAP
) -> ClassBank:
    """A bank from the ``bank.npz`` arrays (entries already unit rows); class-sorted entries are
    used in place (no copy). The file's counts must agree with its entries."""
    c_n, _, _ = check_arrays(a, where)
    emb = np.asarray(a["emb"], np.float32)
    c = np.asarray(a["emb_class"], np.int64)
    if c.size and (c.min() < 0 or c.max() >= c_n):
        raise ValueError(f"{where}: array emb_class has ids outside [0, {c_n})")
    lab = np.asarray(a["emb_label"], np.int8)
    st = np.asarray(a["emb_start"], np.int64)
    vid = np.asarray(a["emb_video"]).astype(np.str_)
    if c.size and np.any(np.diff(c) < 0):
        order = np.argsort(c, kind="stable")
        emb, c, lab, st, vid = emb[order], c[order], lab[order], st[order], vid[order]
    bank = _build_sorted(emb, c, lab, vid, st, c_n, scan_cap)
    for name, got in (("pos_count", bank.pos_count), ("neg_count", bank.neg_count)):
        if not np.array_equal(np.asarray(a[name], np.int64), got):
            raise ValueError(f"{where}: array {name} disagrees with the entries")
    return bank


def _entry_arrays(
    n: int,
    classes: Iterable[int] | npt.ArrayLike,
    labels: Iterable[float] | npt.ArrayLike,
    videos: Sequence[str] | npt.ArrayLike,
    starts: Iterable[int] | npt.ArrayLike,
    num_classes: int,
) -> tuple[I64, I8, npt.NDArray[np.str_], I64]:
    """Checked entry arrays: classes int64 [n], labels int8 [n] 1/0, videos str [n], starts [n]."""
    c = np.asarray(classes if hasattr(classes, "__len__") else list(classes), np.int64)  # type: ignore[arg-type]
    lab = (np.asarray(labels, dtype=np.float64) >= 0.5).astype(np.int8)
    vid = np.asarray(videos, dtype=np.str_) if n else np.zeros(0, dtype="<U1")
    st = np.asarray(starts, dtype=np.int64)
    for name, arr in (("classes", c), ("labels", lab), ("videos", vid), ("starts", st)):
        if arr.shape != (n,):
            raise ValueError(f"bank entries: {name} has shape {arr.shape}, expected ({n},)")
    if n and (c.min() < 0 or c.max() >= num_classes):
        raise ValueError(
            f"bank entries: class ids must be in [0, {num_classes}), got {c.min()}..{c.max()}"
        )
    return c, lab, vid.reshape(n), st


def _last_of_each_key(c: I64, vid: npt.NDArray[np.str_], st: I64) -> I64:
    """int64 [k]: the indices of the last entry of each (class, video, start) key, in order."""
    last: dict[tuple[int, str, int], int] = {}
    for i, key in enumerate(zip(c.tolist(), vid.tolist(), st.tolist(), strict=True)):
        last[key] = i
    return np.asarray(sorted(last.values()), np.int64)


def _video_hashes(videos: Sequence[str]) -> list[int]:
    cache: dict[str, int] = {}
    return [cache[v] if v in cache else cache.setdefault(v, bc.video_hash(v)) for v in videos]


def _build_sorted(
    emb: F32,
    c: I64,
    lab: I8,
    vid: npt.NDArray[np.str_],
    st: I64,
    num_classes: int,
    scan_cap: int,
) -> ClassBank:
    """A bank from class-sorted entries (unit rows): each class's rows are a view of ``emb``."""
    dim = int(emb.shape[1])
    bounds = np.searchsorted(c, np.arange(num_classes + 1))
    videos = vid.tolist()
    vhash = np.asarray(_video_hashes(videos), np.uint64) if videos else np.zeros(0, np.uint64)
    hashes = bc.key_hashes(vhash, st)
    empty = bc.empty_view(dim)
    views: list[ClassView] = []
    for cid in range(num_classes):
        lo, hi = int(bounds[cid]), int(bounds[cid + 1])
        if lo == hi:
            views.append(empty)
            continue
        idx = _dedupe(videos[lo:hi], st[lo:hi].tolist())
        if idx is None:
            sl: Any = slice(lo, hi)
            views.append(
                bc.build_view(emb[sl], lab[sl], st[sl], videos[lo:hi], hashes[sl], scan_cap)
            )
        else:
            g = idx + lo
            views.append(
                bc.build_view(
                    emb[g], lab[g], st[g], [videos[i] for i in g.tolist()], hashes[g], scan_cap
                )
            )
    return ClassBank(views, dim, scan_cap=scan_cap)


def _dedupe(videos: list[str], starts: list[int]) -> I64 | None:
    """None when the (video, start) keys are unique, else the indices of the last of each."""
    keys = list(zip(videos, starts, strict=True))
    if len(set(keys)) == len(keys):
        return None
    last = {k: i for i, k in enumerate(keys)}
    return np.asarray(sorted(last.values()), np.int64)
