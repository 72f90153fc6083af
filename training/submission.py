"""The Kaggle submission file: writing, streaming and reading it (the metric: ``metric.py``).

The format: header ``Class,Segments``, one row per class in ascending class id, the segments as
space-separated ``videoid:start`` tokens, best first (the video id may itself contain ``:``; the
start is the integer after the last one). Files may be gzip-compressed (``.gz`` when writing; the
magic bytes when reading). Reading streams one row at a time (:func:`iter_submission`) and names the
file and line of any malformed row (:class:`SubmissionError`).
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import IO, cast

from tqdm import tqdm

HEADER = ("Class", "Segments")

# A whole Segments field: whitespace-separated tokens ``videoid:start``, the start an ASCII integer
# and the video id non-empty (it may itself contain ':' -- the start follows the LAST ':').
_FIELD_RE = re.compile(r"(?:\S+:-?[0-9]+(?:\s+|\Z))*")
_TOKEN_RE = re.compile(r"\S+:-?[0-9]+")
# What we write: one or more tokens separated by single spaces.
_WRITE_RE = re.compile(r"\S+:-?[0-9]+(?: \S+:-?[0-9]+)*")

Predictions = Mapping[int, Sequence[str]] | Iterable[tuple[int, Sequence[str]]]
"""Class id -> segment tokens best first, or an iterable of ``(class_id, tokens)`` pairs."""


class SubmissionError(ValueError):
    """A malformed submission file or row; the message names the file and line."""


def prediction_items(predictions: Predictions) -> Iterator[tuple[int, Sequence[str]]]:
    """The ``(class_id, tokens)`` pairs of ``predictions`` (a mapping or already pairs)."""
    if isinstance(predictions, Mapping):
        yield from predictions.items()
    else:
        yield from predictions


def _raise_field_size_limit() -> None:
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def _open_text(path: Path, mode: str, *, compressed: bool) -> IO[str]:
    """Open a text CSV for ``mode`` "r" or "w", gzip-compressed or plain."""
    encoding = "utf-8-sig" if mode == "r" else "utf-8"
    if compressed:
        return cast(IO[str], gzip.open(path, mode + "t", encoding=encoding, newline=""))
    return open(path, mode, encoding=encoding, newline="")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _bad_token(tokens: list[str]) -> tuple[int, str]:
    """First token (1-based index, token) that is not ``videoid:start``."""
    for i, tok in enumerate(tokens, 1):
        if not _TOKEN_RE.fullmatch(tok):
            return i, tok
    return 0, ""  # unreachable when the field failed _FIELD_RE


def _check_tokens(tokens: list[str], where: str) -> None:
    for i, tok in enumerate(tokens, 1):
        if not isinstance(tok, str) or not _TOKEN_RE.fullmatch(tok):
            raise SubmissionError(
                f"{where}: token {i} {tok!r} is not a segment id 'videoid:start' "
                "(an integer start after ':', no whitespace)"
            )


def _join_tokens(tokens: list[str], where: str) -> str:
    """Space-join one class's tokens, checking each is ``videoid:start`` without whitespace."""
    try:
        joined = " ".join(tokens)
    except TypeError:
        _check_tokens(tokens, where)
        raise
    if tokens and (joined.count(" ") != len(tokens) - 1 or not _WRITE_RE.fullmatch(joined)):
        _check_tokens(tokens, where)
    return joined


def write_submission(
    path: str | Path,
    predictions: Predictions,
    *,
    top: int | None = None,
    progress: bool = False,
) -> Path:
    """Write a Kaggle submission: header ``Class,Segments``, one row per class in ascending id.

    Args:
        path: the CSV to write (``.gz`` for gzip); written to a temporary file then renamed.
        predictions: class id -> segment tokens ``"vid:start"`` best first (or ``(class, tokens)``
            pairs); each list is truncated to ``top`` when given.
        top: per-class cap, or None to write the lists whole.
        progress: show a progress bar over classes.

    Raises:
        SubmissionError: a token is not ``videoid:start`` (or holds whitespace), a class repeats.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    items = sorted(((int(c), t) for c, t in prediction_items(predictions)), key=lambda it: it[0])
    tmp = path.with_name(path.name + ".tmp")
    seen: set[int] = set()
    try:
        with _open_text(tmp, "w", compressed=path.suffix == ".gz") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(HEADER)
            for c, tokens in tqdm(items, desc="writing", unit="class", disable=not progress):
                if c in seen:
                    raise SubmissionError(f"class {c} is listed twice")
                if c < 0:
                    raise SubmissionError(f"class {c}: class ids are non-negative")
                seen.add(c)
                joined = _join_tokens(list(tokens if top is None else tokens[:top]), f"class {c}")
                if "," in joined or '"' in joined:
                    writer.writerow((c, joined))  # quoted as CSV requires
                else:
                    f.write(f"{c},{joined}\n")  # what csv.writer writes, without its scan
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _csv_rows(f: IO[str], path: Path) -> Iterator[tuple[int, list[str]]]:
    """Non-blank CSV rows as (line number where the row starts, fields).

    A line without a quote character is split on commas directly (what the csv module would do,
    an order of magnitude faster on 100,000-token fields); a line with one goes through
    ``csv.reader``, which pulls continuation lines for a quoted field spanning lines.
    """
    _raise_field_size_limit()
    lines = iter(f)
    number = 0
    for text in lines:
        number += 1
        if '"' in text:
            reader = csv.reader(chain([text], lines), strict=True)
            try:
                row = next(reader, [])
            except csv.Error as e:
                raise SubmissionError(f"{path}: line {number}: bad CSV quoting: {e}") from None
            start, number = number, number + reader.line_num - 1
            if row:
                yield start, row
            continue
        text = text.rstrip("\r\n")
        if text:
            yield number, text.split(",")


def _check_header(rows: Iterator[tuple[int, list[str]]], path: Path) -> None:
    """Consume the first row of ``rows``: it must be the header ``Class,Segments``."""
    first = next(rows, None)
    if first is None:
        raise SubmissionError(f"{path}: line 1: missing header 'Class,Segments' (empty file)")
    header_line, header = first
    if tuple(h.strip() for h in header) != HEADER:
        raise SubmissionError(
            f"{path}: line {header_line}: expected header 'Class,Segments', "
            f"got {','.join(header)!r}"
        )


def _parse_class(raw: str, where: str) -> int:
    """The class id of a row; ``where`` is ``"FILE: line N"`` for the error."""
    try:
        c = int(raw)
    except ValueError:
        raise SubmissionError(f"{where}: class {raw!r} is not an integer") from None
    if c < 0:
        raise SubmissionError(f"{where}: class {c} is negative")
    return c


def _parse_tokens(segments: str, c: int, where: str) -> list[str]:
    """The tokens of class ``c``'s Segments field, each ``videoid:start``."""
    segments = segments.strip()
    if not _FIELD_RE.fullmatch(segments):
        i, tok = _bad_token(segments.split())
        raise SubmissionError(
            f"{where}: class {c}: token {i} {tok!r} is not a segment id "
            "'videoid:start' with an integer start"
        )
    return segments.split()


def iter_submission(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """Stream a submission's rows as ``(class_id, tokens)``, validating each row as it goes.

    Memory holds one row at a time. Blank lines are skipped; an empty Segments field is an empty
    list; a UTF-8 BOM and a gzip-compressed file (detected from its magic bytes) are accepted.

    Raises:
        SubmissionError: naming the file and line: empty file or wrong header, a row without
            exactly two fields, a non-integer or negative class, a token that is not
            ``videoid:start`` with an integer start, a class that appears on two rows.
    """
    path = Path(path)
    seen: dict[int, int] = {}
    with _open_text(path, "r", compressed=_is_gzip(path)) as f:
        rows = _csv_rows(f, path)
        _check_header(rows, path)
        for line, row in rows:
            where = f"{path}: line {line}"
            if len(row) != 2:
                n = len(row)
                raise SubmissionError(f"{where}: expected 2 fields 'Class,Segments', got {n}")
            c = _parse_class(row[0], where)
            if c in seen:
                raise SubmissionError(f"{where}: class {c} already listed on line {seen[c]}")
            seen[c] = line
            yield c, _parse_tokens(row[1], c, where)


def read_submission(path: str | Path) -> dict[int, list[str]]:
    """Read a whole submission: {class id: tokens best first}; see :func:`iter_submission`."""
    return dict(iter_submission(path))
