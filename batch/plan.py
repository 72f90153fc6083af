"""The work of a corpus job: its shards, their record counts, and the chunks (one task each).

A chunk is a range of records of one shard. Videos are numbered in reading order over the whole
corpus (files as :func:`service.tfrecord.expand_paths` orders them, then records): the *ordinal*,
which breaks ties exactly as ``ccrl submit`` does (earlier video first).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from service.tfrecord import example_to_video, expand_paths, iter_records
from service.yt8m import MAX_FRAMES, Video


@dataclass(frozen=True)
class Chunk:
    """Records ``start .. stop`` of shard ``path``; ``ordinal``: the corpus ordinal of ``start``."""

    index: int
    path: str
    start: int
    stop: int
    ordinal: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Plan:
    """Every shard with its record count, and the chunks that cover them in reading order."""

    files: tuple[str, ...]
    counts: tuple[int, ...]
    chunks: tuple[Chunk, ...]

    @property
    def num_videos(self) -> int:
        return sum(self.counts)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "counts": list(self.counts),
            "chunks": [asdict(c) for c in self.chunks],
        }


def count_records(path: str) -> int:
    """Records in one TFRecord shard (framing and CRCs checked, nothing decoded)."""
    return sum(1 for _ in iter_records(path))


def make_plan(files: Sequence[str], counts: Sequence[int], chunk_size: int | None = None) -> Plan:
    """Chunks of at most ``chunk_size`` records (None or 0: one chunk per shard); empty shards get
    none."""
    if len(files) != len(counts):
        raise ValueError(f"{len(files)} files but {len(counts)} counts")
    if chunk_size is not None and chunk_size < 0:
        raise ValueError(f"chunk size must be >= 1 (or 0 for one task per shard), got {chunk_size}")
    chunks: list[Chunk] = []
    ordinal = 0
    for path, n in zip(files, counts, strict=True):
        step = chunk_size or max(n, 1)
        for a in range(0, n, step):
            b = min(a + step, n)
            chunks.append(Chunk(len(chunks), str(path), a, b, ordinal + a))
        ordinal += n
    return Plan(tuple(str(f) for f in files), tuple(int(c) for c in counts), tuple(chunks))


def corpus_files(data: Sequence[str | Path]) -> list[str]:
    """The shards of ``data`` (files, folders, globs) in reading order, as absolute paths."""
    return [str(p.resolve()) for p in expand_paths(data)]


def files_fingerprint(files: Sequence[str]) -> str:
    """sha256 over the shards' paths, sizes and modification times (what a resume must match)."""
    h = hashlib.sha256()
    for f in files:
        st = Path(f).stat()
        h.update(json.dumps([f, st.st_size, st.st_mtime_ns]).encode())
    return h.hexdigest()


def read_chunk(chunk: Chunk) -> Iterator[Video]:
    """The videos of a chunk, decoded exactly as :func:`service.tfrecord.read_videos` does."""
    records = islice(iter_records(chunk.path), chunk.start, chunk.stop)
    for i, data in enumerate(records, start=chunk.start):
        yield example_to_video(data, where=f"{chunk.path}: record {i}", max_frames=MAX_FRAMES)
