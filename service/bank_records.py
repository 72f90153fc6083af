"""Bank records: how a class's entries travel through Redis (raw arrays, never pickle).

A record is ``MAGIC | uint32 header length (little-endian) | JSON header | raw array bytes``. The
header holds the record's ``kind`` and, for each array, its name, dtype (``numpy`` dtype string,
always little-endian) and shape, in the order the bytes follow:

- ``add``: ``emb`` float32 [n, D] (unit rows), ``label`` int8 [n] (1/0), ``start`` int64 [n],
  ``video`` unicode [n]: entries put into the class (a key already there is replaced);
- ``del``: ``start`` int64 [n], ``video`` unicode [n]: entries removed from the class.

Records are bounded: :func:`add_records` splits entries so that no record is over ``max_bytes``
(the Redis layout keeps every value far below ``proto-max-bulk-len``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]

MAGIC = b"CCRB\x01"
MAX_RECORD_BYTES = 512 * 1024
"""Default bound on one record (well below Redis's smallest ``proto-max-bulk-len``, 1 MB)."""

_KINDS = {"add": ("emb", "label", "start", "video"), "del": ("start", "video")}
_ALLOWED = frozenset("fiuU")  # numbers and unicode only: nothing here can unpickle


def encode_arrays(kind: str, arrays: Mapping[str, np.ndarray]) -> bytes:
    """One record: the header, then each array's raw little-endian bytes in order."""
    specs, payload = [], []
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.kind not in _ALLOWED:
            raise ValueError(f"record {kind}.{name}: dtype {a.dtype} is not allowed")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        specs.append([name, a.dtype.str, list(a.shape)])
        payload.append(a.tobytes())
    h = json.dumps({"kind": kind, "arrays": specs}, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<I", len(h)), h, *payload])


def decode_arrays(blob: bytes, where: str) -> tuple[str, dict[str, np.ndarray]]:
    """Inverse of :func:`encode_arrays`: (kind, arrays); ``ValueError`` naming ``where``."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise ValueError(f"{where}: not a bank record")
    (hn,) = struct.unpack_from("<I", blob, len(MAGIC))
    pos = len(MAGIC) + 4
    try:
        header = json.loads(blob[pos : pos + hn])
        kind = str(header["kind"])
        specs = [(str(n), np.dtype(d), tuple(int(x) for x in s)) for n, d, s in header["arrays"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{where}: bad record header ({e})") from None
    pos += hn
    out: dict[str, np.ndarray] = {}
    for name, dtype, shape in specs:
        if dtype.kind not in _ALLOWED:
            raise ValueError(f"{where}: array {name} has dtype {dtype}, which is not allowed")
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if pos + size > len(blob):
            raise ValueError(f"{where}: array {name} {list(shape)} needs {size} bytes, truncated")
        out[name] = np.frombuffer(
            blob, dtype=dtype, count=size // max(dtype.itemsize, 1), offset=pos
        ).reshape(shape)
        pos += size
    if pos != len(blob):
        raise ValueError(f"{where}: {len(blob) - pos} bytes after the last array")
    return kind, out


@dataclass(frozen=True)
class Record:
    """A decoded record: ``kind`` add|del, the entries' starts and video ids, and for ``add`` the
    unit embeddings float32 [n, D] and labels int8 [n]."""

    kind: str
    start: I64
    video: list[str]
    emb: F32 | None = None
    label: I8 | None = None

    def __len__(self) -> int:
        return int(self.start.shape[0])


def decode_record(blob: bytes, where: str) -> Record:
    """A checked :class:`Record` from its bytes (``ValueError`` naming ``where``)."""
    kind, a = decode_arrays(blob, where)
    need = _KINDS.get(kind)
    if need is None:
        raise ValueError(f"{where}: unknown record kind {kind!r}")
    missing = [n for n in need if n not in a]
    if missing:
        raise ValueError(f"{where}: {kind} record lacks arrays {missing}")
    n = a["start"].shape[0]
    for name in need:
        if a[name].shape[:1] != (n,) or (name != "emb" and a[name].ndim != 1):
            raise ValueError(f"{where}: array {name} has shape {a[name].shape}, expected ({n},..)")
    video = [str(v) for v in a["video"].tolist()]
    start = a["start"].astype(np.int64)
    if kind == "del":
        return Record("del", start, video)
    if a["emb"].ndim != 2:
        raise ValueError(f"{where}: array emb has shape {a['emb'].shape}, expected [n, D]")
    return Record("add", start, video, a["emb"].astype(np.float32), a["label"].astype(np.int8))


def _videos(video: Sequence[str]) -> np.ndarray:
    return np.asarray(list(video), dtype=np.str_) if len(video) else np.zeros(0, "<U1")


def rows_per_record(dim: int, max_bytes: int = MAX_RECORD_BYTES, video_chars: int = 16) -> int:
    """How many entries of D dims fit in one record of ``max_bytes`` (at least 1)."""
    per_row = 4 * dim + 1 + 8 + 4 * video_chars
    return max(1, (max_bytes - 512) // per_row)


def add_records(
    emb: F32,
    label: npt.ArrayLike,
    start: npt.ArrayLike,
    video: Sequence[str],
    *,
    rows: int,
) -> list[bytes]:
    """``add`` records of at most ``rows`` entries each (unit rows float32 [n, D])."""
    lab = np.asarray(label, np.int8)
    st = np.asarray(start, np.int64)
    vid = list(video)
    out = []
    for i in range(0, len(st), max(rows, 1)):
        sl = slice(i, i + rows)
        out.append(
            encode_arrays(
                "add",
                {
                    "emb": np.asarray(emb[sl], np.float32),
                    "label": lab[sl],
                    "start": st[sl],
                    "video": _videos(vid[sl]),
                },
            )
        )
    return out


def del_record(video: Sequence[str], start: npt.ArrayLike) -> bytes:
    """One ``del`` record (removals are small: no embeddings)."""
    return encode_arrays(
        "del", {"start": np.asarray(start, np.int64), "video": _videos(list(video))}
    )


def header_of(blob: bytes) -> dict[str, Any]:
    """The JSON header of a record (for tools and tests)."""
    (hn,) = struct.unpack_from("<I", blob, len(MAGIC))
    return dict(json.loads(blob[len(MAGIC) + 4 : len(MAGIC) + 4 + hn]))
