"""Reading the YouTube-8M class vocabulary (``vocabulary.csv``) and rated-class list.

The real ``vocabulary.csv`` has the columns ``Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,
Vertical1,Vertical2,Vertical3,WikiDescription``, with quoted fields holding commas, quotes and line
breaks, and some empty values. Only ``Index`` and ``Name`` are required here; other columns are read
when present and ignored otherwise. ``segment_label_ids.csv`` is a header ``Index`` and one class id
per line (the classes the segment task rates).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

REQUIRED_COLUMNS = ("Index", "Name")


class VocabularyError(ValueError):
    """A malformed vocabulary or class-id file; the message names the file, line and field."""


@dataclass(frozen=True)
class Vocabulary:
    """Class metadata keyed by class id (the vocabulary ``Index``).

    Attributes:
        names: class id -> display name (classes with an empty name are absent; see :meth:`name`).
        verticals: class id -> ``Vertical1`` (absent when empty or when the column is missing).
        kg_ids: class id -> ``KnowledgeGraphId`` (absent when empty or missing).
        train_video_counts: class id -> ``TrainVideoCount`` (absent when empty or missing).
        ids: int64 [N], every class id of the file, sorted.
    """

    names: dict[int, str]
    verticals: dict[int, str] = field(default_factory=dict)
    kg_ids: dict[int, str] = field(default_factory=dict)
    train_video_counts: dict[int, int] = field(default_factory=dict)
    ids: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def name(self, c: int) -> str:
        """The name of class ``c``, or ``"class {c}"`` when it is unknown or empty."""
        return self.names.get(int(c)) or f"class {int(c)}"

    def vertical(self, c: int) -> str | None:
        """The first vertical of class ``c``, or None."""
        return self.verticals.get(int(c))

    @property
    def num_classes(self) -> int:
        """One more than the largest class id (the width of a per-class output vector)."""
        return int(self.ids[-1]) + 1 if len(self.ids) else 0

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, c: object) -> bool:
        if not isinstance(c, int | np.integer):
            return False
        i = int(np.searchsorted(self.ids, int(c)))
        return i < len(self.ids) and int(self.ids[i]) == int(c)


def _parse_int(text: str, path: Path, line: int, column: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise VocabularyError(
            f"{path}:{line}: column {column!r} must be an integer, got {text!r}"
        ) from None


def read_vocabulary(path: str | Path) -> Vocabulary:
    """Read ``vocabulary.csv`` (real or synthetic).

    Robust to extra or reordered columns, quoted commas / quotes / newlines, a UTF-8 BOM, blank
    lines and empty values. Raises :class:`VocabularyError` naming the file (and line) for a
    missing ``Index``/``Name`` column, a non-integer or duplicate ``Index``, or a bad
    ``TrainVideoCount``; ``FileNotFoundError`` when the file does not exist.
    """
    p = Path(path)
    names: dict[int, str] = {}
    verticals: dict[int, str] = {}
    kg_ids: dict[int, str] = {}
    counts: dict[int, int] = {}
    with p.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise VocabularyError(f"{p}: empty file (expected a header with Index and Name)")
        cols = {h.strip(): i for i, h in enumerate(header)}
        missing = [c for c in REQUIRED_COLUMNS if c not in cols]
        if missing:
            found = [h.strip() for h in header]
            raise VocabularyError(f"{p}:1: missing column(s) {', '.join(missing)}; found {found}")

        def get(row: list[str], column: str) -> str:
            i = cols.get(column)
            return row[i].strip() if i is not None and i < len(row) else ""

        start_line = reader.line_num
        for row in reader:
            line = start_line
            start_line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            raw_index = get(row, "Index")
            if not raw_index:
                raise VocabularyError(f"{p}:{line + 1}: empty Index")
            c = _parse_int(raw_index, p, line + 1, "Index")
            if c < 0:
                raise VocabularyError(f"{p}:{line + 1}: negative Index {c}")
            if c in names:
                raise VocabularyError(f"{p}:{line + 1}: duplicate Index {c}")
            names[c] = get(row, "Name")
            if v := get(row, "Vertical1"):
                verticals[c] = v
            if k := get(row, "KnowledgeGraphId"):
                kg_ids[c] = k
            if n := get(row, "TrainVideoCount"):
                counts[c] = _parse_int(n, p, line + 1, "TrainVideoCount")
    ids = np.array(sorted(names), dtype=np.int64)
    return Vocabulary(
        names={c: n for c, n in names.items() if n},
        verticals=verticals,
        kg_ids=kg_ids,
        train_video_counts=counts,
        ids=ids,
    )


def read_segment_label_ids(path: str | Path) -> npt.NDArray[np.int64]:
    """Read ``segment_label_ids.csv``: int64 [R], the rated class ids in file order.

    The header must contain an ``Index`` column (extra columns are ignored). Raises
    :class:`VocabularyError` naming the file and line for a missing column, a non-integer, a
    negative or a duplicate id.
    """
    p = Path(path)
    out: list[int] = []
    seen: set[int] = set()
    with p.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise VocabularyError(f"{p}: empty file (expected a header 'Index')")
        stripped = [h.strip() for h in header]
        if "Index" not in stripped:
            raise VocabularyError(f"{p}:1: missing column Index; found {stripped}")
        col = stripped.index("Index")
        line = reader.line_num
        for row in reader:
            line, prev = reader.line_num, line
            if not any(cell.strip() for cell in row):
                continue
            text = row[col].strip() if col < len(row) else ""
            c = _parse_int(text, p, prev + 1, "Index")
            if c < 0:
                raise VocabularyError(f"{p}:{prev + 1}: negative class id {c}")
            if c in seen:
                raise VocabularyError(f"{p}:{prev + 1}: duplicate class id {c}")
            seen.add(c)
            out.append(c)
    return np.asarray(out, dtype=np.int64)
