"""The labelled-embedding bank of CCRL (numpy only): per-class sums of unit vectors and the entries.

The similarity features of :mod:`service.features` read it; the stores (:mod:`service.stores`) hold
it; training builds it from the rated segments and writes it to the bundle as ``bank.npz`` (the
layout is in docs/contracts.md). A bank is never changed in place: :meth:`ClassBank.add` and
:meth:`ClassBank.without_video` return a new one, so a reader's snapshot stays valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def unit_rows(x: npt.ArrayLike) -> F32:
    """Rows scaled to unit L2 norm: float32 [N, D] -> float32 [N, D]; all-zero rows stay zero."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-d array of embeddings, got shape {a.shape}")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)


@dataclass
class ClassBank:
    """The labelled-embedding bank: per-class sums of unit vectors, counts, and the raw entries.

    Attributes:
        pos_sum: float32 [C, D], sum of the unit embeddings of the positive segments of each class.
        neg_sum: float32 [C, D], the same for the negatives.
        pos_count: int64 [C], number of positive entries per class.
        neg_count: int64 [C], number of negative entries per class.
        emb: float32 [N, D], the unit embedding of every labelled (segment, class) entry.
        emb_class: int64 [N], the entry's class.
        emb_label: int8 [N], 1 positive, 0 negative.
        emb_video: str [N], the entry's video id (for the same-video exclusion).
        emb_start: int64 [N], the entry's segment start frame.
    """

    pos_sum: F32
    neg_sum: F32
    pos_count: I64
    neg_count: I64
    emb: F32
    emb_class: I64
    emb_label: npt.NDArray[np.int8]
    emb_video: npt.NDArray[np.str_]
    emb_start: I64
    _by_video: dict[str, I64] | None = field(default=None, repr=False, compare=False)
    _groups: tuple[I64, I64] | None = field(default=None, repr=False, compare=False)

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

    @property
    def num_classes(self) -> int:
        return int(self.pos_sum.shape[0])

    @property
    def dim(self) -> int:
        return int(self.pos_sum.shape[1])

    def __len__(self) -> int:
        return int(self.emb.shape[0])

    @classmethod
    def empty(cls, num_classes: int, dim: int) -> ClassBank:
        """A bank with no entries: C classes, D-dimensional embeddings."""
        return cls.from_entries(
            np.zeros((0, dim), np.float32), [], [], [], [], num_classes=num_classes
        )

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
    ) -> ClassBank:
        """Build a bank from labelled entries.

        Args:
            embeddings: float [N, D] segment embeddings (normalized here to unit length).
            classes: int [N] class ids in ``[0, num_classes)``.
            labels: [N] 1 (positive) or 0 (negative); scores >= 0.5 count as positive.
            videos: [N] video ids.
            starts: int [N] segment start frames.
            num_classes: C, the vocabulary size.
        """
        e = unit_rows(embeddings)
        n = e.shape[0]
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
        pos_sum, neg_sum, pos_count, neg_count = _class_sums(e, c, lab, num_classes)
        return cls(pos_sum, neg_sum, pos_count, neg_count, e, c, lab, vid.reshape(n), st)

    # ------------------------------------------------------------------ updates
    def add(
        self,
        embeddings: npt.ArrayLike,
        classes: npt.ArrayLike,
        labels: npt.ArrayLike,
        videos: Sequence[str] | npt.ArrayLike,
        starts: npt.ArrayLike,
    ) -> ClassBank:
        """A new bank with these entries added; an entry with the same (class, video, start) as an
        existing one replaces it (a relabel). The sums are rebuilt from the raw entries, O(N D)."""
        new = ClassBank.from_entries(
            embeddings, classes, labels, videos, starts, num_classes=self.num_classes
        )
        if new.dim != self.dim and len(new):
            raise ValueError(f"bank entries: embedding dim {new.dim}, the bank's is {self.dim}")
        old_keys = _entry_keys(self.emb_class, self.emb_video, self.emb_start)
        new_keys = set(_entry_keys(new.emb_class, new.emb_video, new.emb_start))
        keep = np.array([k not in new_keys for k in old_keys], dtype=bool)
        return ClassBank.from_entries(
            np.concatenate([self.emb[keep], new.emb]),
            np.concatenate([self.emb_class[keep], new.emb_class]),
            np.concatenate([self.emb_label[keep], new.emb_label]),
            np.concatenate([self.emb_video[keep].astype(object), new.emb_video.astype(object)]),
            np.concatenate([self.emb_start[keep], new.emb_start]),
            num_classes=self.num_classes,
        )

    def without_video(self, video_id: str) -> ClassBank:
        """A new bank without any entry of ``video_id``."""
        keep = self.emb_video != video_id
        return ClassBank.from_entries(
            self.emb[keep],
            self.emb_class[keep],
            self.emb_label[keep],
            self.emb_video[keep],
            self.emb_start[keep],
            num_classes=self.num_classes,
        )

    # ------------------------------------------------------------------ indexes
    def video_entries(self, video_id: str | None) -> I64:
        """Indices (int64 [n]) of the bank entries of ``video_id`` (empty for None / unknown)."""
        if video_id is None:
            return np.zeros(0, np.int64)
        if self._by_video is None:
            index: dict[str, list[int]] = {}
            for i, v in enumerate(self.emb_video.tolist()):
                index.setdefault(v, []).append(i)
            self._by_video = {v: np.asarray(ix, np.int64) for v, ix in index.items()}
        return self._by_video.get(video_id, np.zeros(0, np.int64))

    def class_groups(self) -> tuple[I64, I64]:
        """(order, offsets): entries sorted by (class, label); group g = 2 * class + label spans
        ``order[offsets[g]:offsets[g + 1]]``. offsets is int64 [2C + 1]."""
        if self._groups is None:
            g = self.emb_class * 2 + self.emb_label.astype(np.int64)
            order = np.argsort(g, kind="stable").astype(np.int64)
            counts = np.bincount(g, minlength=2 * self.num_classes)
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            self._groups = (order, offsets)
        return self._groups

    # ------------------------------------------------------------------ files
    def arrays(self) -> dict[str, np.ndarray]:
        """The bank as plain arrays (the ``bank.npz`` layout of docs/contracts.md)."""
        return {name: getattr(self, name) for name in self.ARRAYS}

    def save(self, path: str | Path) -> Path:
        """Write ``bank.npz`` (uncompressed, no pickled objects)."""
        path = Path(path)
        arrays = self.arrays()
        if arrays["emb_video"].size == 0:
            arrays["emb_video"] = np.zeros(0, dtype="<U1")
        with path.open("wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: str | Path) -> ClassBank:
        """Read a bank written by :meth:`save` (``allow_pickle=False``); checks names and shapes."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [n for n in cls.ARRAYS if n not in z.files]
                if missing:
                    raise ValueError(f"{path}: missing arrays {missing}")
                a = {n: z[n] for n in cls.ARRAYS}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable bank ({exc})") from exc
        bank = cls(
            a["pos_sum"].astype(np.float32),
            a["neg_sum"].astype(np.float32),
            a["pos_count"].astype(np.int64),
            a["neg_count"].astype(np.int64),
            a["emb"].astype(np.float32),
            a["emb_class"].astype(np.int64),
            a["emb_label"].astype(np.int8),
            a["emb_video"].astype(np.str_),
            a["emb_start"].astype(np.int64),
        )
        bank.validate(str(path))
        return bank

    def validate(self, where: str = "bank") -> None:
        """Raise ``ValueError`` naming ``where`` and the array when shapes disagree."""
        c, d = self.pos_sum.shape if self.pos_sum.ndim == 2 else (-1, -1)
        n = self.emb.shape[0] if self.emb.ndim == 2 else -1
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
            got = getattr(self, name).shape
            if got != shape or c < 0 or n < 0:
                raise ValueError(f"{where}: array {name} has shape {got}, expected {shape}")


def _entry_keys(c: I64, v: npt.NDArray[np.str_], s: I64) -> list[tuple[int, str, int]]:
    return list(zip(c.tolist(), v.tolist(), s.tolist(), strict=True))


def _class_sums(
    e: F32, c: I64, lab: npt.NDArray[np.int8], num_classes: int
) -> tuple[F32, F32, I64, I64]:
    """Per-class sums of unit vectors ([C, D] each, accumulated in float64) and counts ([C])."""
    d = e.shape[1]
    pos = np.zeros((num_classes, d), np.float64)
    neg = np.zeros((num_classes, d), np.float64)
    is_pos = lab == 1
    np.add.at(pos, c[is_pos], e[is_pos])
    np.add.at(neg, c[~is_pos], e[~is_pos])
    pos_count = np.bincount(c[is_pos], minlength=num_classes).astype(np.int64)
    neg_count = np.bincount(c[~is_pos], minlength=num_classes).astype(np.int64)
    return pos.astype(np.float32), neg.astype(np.float32), pos_count, neg_count
