"""YouTube-8M TFRecord files, read and written without TensorFlow.

Framing (TensorFlow's ``TFRecordWriter``), for every record::

    uint64 length (LE) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

with ``mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32)``. A file may be
gzip-compressed as a whole (TensorFlow's ``compression_type="GZIP"``); the reader detects it from
the magic bytes ``1f 8b``, whatever the file name says.

Each record is a serialized ``tensorflow.SequenceExample`` (real protobuf classes generated from
``service/proto/example.proto``) in the YouTube-8M frame-level layout:

- context: ``id`` (bytes), ``labels`` (int64 list) and, in segment-rated files only,
  ``segment_labels`` (int64), ``segment_start_times`` (int64), ``segment_scores`` (float);
- feature lists: ``rgb`` (one 1024-byte string per frame), ``audio`` (one 128-byte string per
  frame).

Real-data quirks, handled on read (each counted in :class:`ReadStats`):

- files without segment fields (the real test set) give videos without ratings;
- a rating whose start is not a multiple of 5, is negative, or whose segment does not fit in the
  video's whole segments (``start + 5 > F``) is dropped with a warning (``skipped_ratings``);
- a record with more than ``max_frames`` (default 300, the starter code's limit) frames is
  truncated to its first ``max_frames`` frames with a warning (``truncated_videos``);
  ``max_frames=None`` keeps every frame. Ratings past the truncation are then dropped as above.

Errors: :class:`CorruptRecordError` (bad CRC, truncated file, broken gzip stream) and
:class:`RecordFormatError` (a record that is not a valid YouTube-8M ``SequenceExample``, e.g. a
1000-byte rgb frame) both name the file and the byte offset of the record (for gzip files, the
offset in the uncompressed stream). With ``skip_corrupt=True`` a bad record is skipped with a
warning and reading goes on at the next record; when the next record cannot be found (bad length
CRC, truncated file, broken gzip stream) the rest of that file is skipped with a warning.

Note: the generated messages live in protobuf's default descriptor pool under TensorFlow's own
type names (``tensorflow.SequenceExample``), so this module and TensorFlow's ``example_pb2``
cannot be imported in the same process. Nothing here needs TensorFlow; check TensorFlow
compatibility from a separate process (see ``scripts/make-tf-fixtures.py`` and
``tests/service/test_tfrecord.py``).
"""

from __future__ import annotations

import glob
import gzip
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import google_crc32c
import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError
from tqdm import tqdm

from service.proto import example_pb2
from service.yt8m import AUDIO_DIM, MAX_FRAMES, RGB_DIM, SEGMENT_FRAMES, Video

log = logging.getLogger(__name__)

__all__ = [
    "CorruptRecordError",
    "ReadStats",
    "RecordFormatError",
    "TFRecordError",
    "example_to_video",
    "expand_paths",
    "is_gzip_header",
    "iter_records",
    "masked_crc32c",
    "read_videos",
    "shard_paths",
    "video_to_example",
    "write_records",
    "write_videos",
]

GZIP_MAGIC = b"\x1f\x8b"
_HEADER = struct.Struct("<QI")  # length, masked crc of the 8 length bytes
_FOOTER = struct.Struct("<I")  # masked crc of the data
_MASK_DELTA = 0xA282EAD8
# A single record larger than this is not a YouTube-8M video (300 frames are ~360 KB); a length this
# big that still passes its CRC means a writer bug, and reading it would exhaust memory.
MAX_RECORD_BYTES = 1 << 30


class TFRecordError(Exception):
    """Base class of every error this module raises about a file's content."""


class CorruptRecordError(TFRecordError):
    """A record whose framing is broken: bad length or data CRC, truncated file, bad gzip stream.

    Attributes:
        path: the file.
        offset: byte offset of the record's start (uncompressed stream offset for gzip files).
    """

    def __init__(self, path: Path | str, offset: int, reason: str, *, gzip: bool = False) -> None:
        self.path = Path(path)
        self.offset = int(offset)
        self.reason = reason
        self.gzip = gzip
        where = f"byte offset {offset}" + (" of the uncompressed stream" if gzip else "")
        super().__init__(f"{path}: corrupt record at {where}: {reason}")


class RecordFormatError(TFRecordError, ValueError):
    """A well-framed record that is not a valid YouTube-8M frame-level ``SequenceExample``."""


@dataclass(slots=True)
class ReadStats:
    """Counters filled in while reading (pass one to :func:`read_videos`)."""

    files: int = 0
    bytes: int = 0  # on-disk size of the files read
    records: int = 0  # well-framed records seen
    videos: int = 0  # videos yielded
    corrupt_records: int = 0  # records skipped with skip_corrupt=True (framing or format)
    skipped_files: int = 0  # files whose tail was skipped (bad length CRC, truncation, bad gzip)
    skipped_ratings: int = 0  # ratings dropped: the two kinds below together
    skipped_unaligned: int = 0  # start not a multiple of 5 (or negative)
    skipped_past_end: int = 0  # aligned start, but the segment does not fit in the frames
    truncated_videos: int = 0  # videos cut to max_frames


# --------------------------------------------------------------------------------------------------
# Framing


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data`` (a uint32)."""
    crc = int(google_crc32c.value(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def is_gzip_header(head: bytes) -> bool:
    """True when a file starting with ``head`` (its first 12+ bytes) is gzip, not plain TFRecord.

    The gzip magic ``1f 8b`` is also how a plain file starts when its first record's length is
    ``0x8b1f`` modulo 65536, so a start that is a valid TFRecord header (the length's CRC matches,
    a 2**-32 accident for a gzip header) is read as plain.
    """
    if head[:2] != GZIP_MAGIC:
        return False
    if len(head) >= _HEADER.size:
        length_bytes, (crc,) = head[:8], _FOOTER.unpack_from(head, 8)
        if masked_crc32c(length_bytes) == crc:
            return False
    return True


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    """Read up to ``n`` bytes (fewer only at end of stream)."""
    data = stream.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = stream.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _iter_framed(
    path: Path, *, skip_corrupt: bool, stats: ReadStats | None, on_raw_pos: _PosCallback | None
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, data)`` for every record of one file, checking both CRCs."""
    with open(path, "rb") as raw:
        stream: BinaryIO
        gz = is_gzip_header(raw.read(_HEADER.size))
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw  # type: ignore[assignment]
        offset = 0
        while True:
            try:
                header = _read_exact(stream, _HEADER.size)
                if not header:
                    return
                if len(header) < _HEADER.size:
                    raise CorruptRecordError(
                        path, offset, f"truncated file: {len(header)} of 12 header bytes", gzip=gz
                    )
                length, length_crc = _HEADER.unpack(header)
                if masked_crc32c(header[:8]) != length_crc:
                    raise CorruptRecordError(
                        path, offset, "length CRC mismatch (the record boundary is lost)", gzip=gz
                    )
                if length > MAX_RECORD_BYTES:
                    raise CorruptRecordError(
                        path, offset, f"record length {length} is too large", gzip=gz
                    )
                data = _read_exact(stream, length)
                footer = _read_exact(stream, _FOOTER.size) if len(data) == length else b""
                if len(footer) < _FOOTER.size:
                    raise CorruptRecordError(
                        path,
                        offset,
                        f"truncated file: record of {length} bytes, only "
                        f"{len(data) + len(footer)} of {length + 4} data+CRC bytes present",
                        gzip=gz,
                    )
            except (OSError, EOFError, zlib.error) as exc:  # broken gzip stream or I/O error
                what = "unreadable gzip stream" if gz else "read error"
                io_err = CorruptRecordError(path, offset, f"{what} ({exc})", gzip=gz)
                if not skip_corrupt:
                    raise io_err from exc
                _skip_file(io_err, stats)
                return
            except CorruptRecordError as err:
                if not skip_corrupt:
                    raise
                _skip_file(err, stats)
                return
            (data_crc,) = _FOOTER.unpack(footer)
            record_offset = offset
            offset += _HEADER.size + length + _FOOTER.size
            if on_raw_pos is not None:
                on_raw_pos(raw.tell())
            if masked_crc32c(data) != data_crc:
                crc_err = CorruptRecordError(path, record_offset, "data CRC mismatch", gzip=gz)
                if not skip_corrupt:
                    raise crc_err
                log.warning("%s; skipped, reading on at the next record", crc_err)
                if stats is not None:
                    stats.corrupt_records += 1
                continue
            if stats is not None:
                stats.records += 1
            yield record_offset, data


def _skip_file(err: CorruptRecordError, stats: ReadStats | None) -> None:
    log.warning("%s; skipping the rest of this file", err)
    if stats is not None:
        stats.corrupt_records += 1
        stats.skipped_files += 1


class _PosCallback:
    """Advances a tqdm bar to a file's raw read position (bytes consumed from disk)."""

    def __init__(self, bar: tqdm[object]) -> None:
        self.bar = bar
        self.last = 0

    def __call__(self, pos: int) -> None:
        if pos > self.last:
            self.bar.update(pos - self.last)
            self.last = pos


def iter_records(path: str | Path, *, skip_corrupt: bool = False) -> Iterator[bytes]:
    """Yield the raw records (serialized protos) of one TFRecord file, plain or gzip.

    Raises:
        CorruptRecordError: bad CRC or truncated file (unless ``skip_corrupt``).
    """
    for _, data in _iter_framed(Path(path), skip_corrupt=skip_corrupt, stats=None, on_raw_pos=None):
        yield data


def _frame(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return b"".join(
        (
            header,
            struct.pack("<I", masked_crc32c(header)),
            data,
            struct.pack("<I", masked_crc32c(data)),
        )
    )


class _RecordWriter:
    """Writes framed records to ``path`` through a temporary file renamed into place on close."""

    def __init__(self, path: Path, *, compress: bool) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self._raw = open(self.tmp, "wb")
        self._out: BinaryIO = (
            gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0, filename="")  # type: ignore[assignment]
            if compress
            else self._raw
        )
        self.count = 0

    def write(self, data: bytes) -> None:
        self._out.write(_frame(data))
        self.count += 1

    def close(self, *, commit: bool = True) -> None:
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()
        if commit:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_records(path: str | Path, records: Iterable[bytes], *, compress: bool = False) -> int:
    """Write ``records`` (serialized protos) to one TFRecord file; returns the number written.

    The file appears atomically (written to a hidden temporary file, then renamed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = _RecordWriter(path, compress=compress)
    try:
        for data in records:
            writer.write(data)
    except BaseException:
        writer.close(commit=False)
        raise
    writer.close()
    return writer.count


# --------------------------------------------------------------------------------------------------
# SequenceExample <-> Video


def video_to_example(video: Video) -> bytes:
    """Serialize a :class:`Video` as a YouTube-8M frame-level ``SequenceExample``.

    Segment fields are written only when the video carries ratings (like the real train/test files).

    Raises:
        ValueError: rgb / audio are not uint8 (quantize float features first).
    """
    seq = example_pb2.SequenceExample()
    ctx = seq.context.feature
    ctx["id"].bytes_list.value.append(video.id.encode("utf-8"))
    ctx["labels"].int64_list.value.extend(np.asarray(video.labels, dtype=np.int64).tolist())
    if len(video.segment_labels):
        ctx["segment_labels"].int64_list.value.extend(
            np.asarray(video.segment_labels, dtype=np.int64).tolist()
        )
        ctx["segment_start_times"].int64_list.value.extend(
            np.asarray(video.segment_starts, dtype=np.int64).tolist()
        )
        ctx["segment_scores"].float_list.value.extend(
            np.asarray(video.segment_scores, dtype=np.float32).tolist()
        )
    lists = seq.feature_lists.feature_list
    for name, arr, dim in (("rgb", video.rgb, RGB_DIM), ("audio", video.audio, AUDIO_DIM)):
        if arr.dtype != np.uint8:
            raise ValueError(
                f"video {video.id!r}: {name} must be uint8 (quantized), got {arr.dtype}; "
                "use service.yt8m.quantize on float features"
            )
        blob = np.ascontiguousarray(arr).tobytes()
        feats = lists[name].feature
        for i in range(0, len(blob), dim):
            feats.add().bytes_list.value.append(blob[i : i + dim])
    out: bytes = seq.SerializeToString(deterministic=True)
    return out


def _context_array(
    ctx: example_pb2.Features, name: str, kind: str, dtype: type, where: str
) -> np.ndarray:
    """A context feature as a 1-D array; empty when absent. Raises on the wrong list type."""
    if name not in ctx.feature:
        return np.zeros(0, dtype=dtype)
    feat = ctx.feature[name]
    got = feat.WhichOneof("kind")
    if got is None:
        return np.zeros(0, dtype=dtype)
    if got != kind:
        raise RecordFormatError(f"{where}: context feature {name!r} must be a {kind}, got {got}")
    return np.array(getattr(feat, kind).value, dtype=dtype)


def _frames(
    lists: example_pb2.FeatureLists, name: str, dim: int, where: str
) -> tuple[np.ndarray, int]:
    """Join a bytes feature list into uint8 [F, dim] with one ``np.frombuffer``."""
    if name not in lists.feature_list:
        raise RecordFormatError(f"{where}: missing feature list {name!r}")
    feats = lists.feature_list[name].feature
    try:
        # a bytearray, so the arrays are writable without a second copy
        blob = bytearray().join([f.bytes_list.value[0] for f in feats])
        n = len(feats)
        ok = len(blob) == n * dim
    except IndexError:
        ok = False
    if not ok:  # diagnose the first bad frame
        for i, f in enumerate(feats):
            kind = f.WhichOneof("kind")
            if kind != "bytes_list":
                raise RecordFormatError(
                    f"{where}: {name} frame {i} must be a bytes_list, got {kind}"
                ) from None
            vals = f.bytes_list.value
            if len(vals) != 1 or len(vals[0]) != dim:
                sizes = [len(v) for v in vals]
                raise RecordFormatError(
                    f"{where}: {name} frame {i} must be one {dim}-byte string, got byte lengths "
                    f"{sizes}"
                ) from None
        raise RecordFormatError(f"{where}: malformed {name} feature list")  # pragma: no cover
    return np.frombuffer(blob, dtype=np.uint8).reshape(n, dim), n


# Segment ratings as stored: labels i64[R], start frames i64[R], scores f32[R].
_Ratings = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]


def _parse_example(data: bytes, where: str) -> example_pb2.SequenceExample:
    try:
        return example_pb2.SequenceExample.FromString(data)
    except DecodeError as exc:
        raise RecordFormatError(f"{where}: not a SequenceExample ({exc})") from exc


def _video_id(ctx: example_pb2.Features, where: str) -> str:
    """The context feature ``id``: exactly one UTF-8 bytes value."""
    if "id" not in ctx.feature or ctx.feature["id"].WhichOneof("kind") != "bytes_list":
        raise RecordFormatError(f"{where}: missing context feature 'id' (bytes)")
    ids = ctx.feature["id"].bytes_list.value
    if len(ids) != 1:
        raise RecordFormatError(
            f"{where}: context feature 'id' must hold one value, got {len(ids)}"
        )
    try:
        return ids[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordFormatError(f"{where}: video id {ids[0]!r} is not UTF-8") from exc


def _ratings(ctx: example_pb2.Features, where: str) -> _Ratings:
    """The segment ratings as they are stored: labels i64[R], starts i64[R], scores f32[R]."""
    labels = _context_array(ctx, "segment_labels", "int64_list", np.int64, where)
    starts = _context_array(ctx, "segment_start_times", "int64_list", np.int64, where)
    scores = _context_array(ctx, "segment_scores", "float_list", np.float32, where)
    if not (len(labels) == len(starts) == len(scores)):
        raise RecordFormatError(
            f"{where}: segment_labels, segment_start_times and segment_scores differ in length "
            f"({len(labels)}, {len(starts)}, {len(scores)})"
        )
    return labels, starts, scores


def _video_frames(
    lists: example_pb2.FeatureLists, where: str, max_frames: int | None, stats: ReadStats | None
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """rgb u8[F, 1024] and audio u8[F, 128], F cut to ``max_frames`` (with a warning)."""
    rgb, n_rgb = _frames(lists, "rgb", RGB_DIM, where)
    audio, n_audio = _frames(lists, "audio", AUDIO_DIM, where)
    if n_rgb != n_audio:
        raise RecordFormatError(f"{where}: {n_rgb} rgb frames but {n_audio} audio frames")
    if max_frames is not None and n_rgb > max_frames:
        log.warning("%s: %d frames, truncated to the first %d", where, n_rgb, max_frames)
        rgb, audio = rgb[:max_frames], audio[:max_frames]
        if stats is not None:
            stats.truncated_videos += 1
    return rgb, audio


def _keep_scorable(
    ratings: _Ratings, num_frames: int, where: str, stats: ReadStats | None
) -> _Ratings:
    """The ratings whose segment starts at a multiple of 5 and fits in ``num_frames``; the others
    are dropped with one warning and counted in ``stats``."""
    labels, starts, scores = ratings
    if not len(starts):
        return ratings
    fits = starts + SEGMENT_FRAMES <= num_frames
    aligned = (starts % SEGMENT_FRAMES == 0) & (starts >= 0)
    keep = fits & aligned
    dropped = int(len(keep) - keep.sum())
    if not dropped:
        return ratings
    bad = sorted(set(starts[~keep].tolist()))
    log.warning(
        "%s: dropped %d of %d ratings whose start %s is not a multiple of %d or does not "
        "fit in the video's %d frames",
        where,
        dropped,
        len(keep),
        bad,
        SEGMENT_FRAMES,
        num_frames,
    )
    if stats is not None:
        stats.skipped_ratings += dropped
        unaligned = int(np.count_nonzero(~aligned))
        stats.skipped_unaligned += unaligned
        stats.skipped_past_end += dropped - unaligned
    return labels[keep], starts[keep], scores[keep]


def example_to_video(
    data: bytes,
    *,
    where: str = "record",
    max_frames: int | None = MAX_FRAMES,
    stats: ReadStats | None = None,
) -> Video:
    """Parse a serialized YouTube-8M ``SequenceExample`` into a :class:`Video`.

    Args:
        data: the serialized proto.
        where: how error and warning messages name the record (e.g. ``"a.tfrecord @ offset 12"``).
        max_frames: truncate longer videos to this many frames (with a warning); None keeps all.
        stats: counters for dropped ratings and truncated videos.

    Returns:
        a Video with rgb u8[F, 1024], audio u8[F, 128] (writable, one buffer each),
        labels i64[L] and the kept ratings i64[R] / i64[R] / f32[R].

    Raises:
        RecordFormatError: not a SequenceExample, missing ``id``/``rgb``/``audio``, a wrong type, a
            frame of the wrong byte length, rgb and audio frame counts that differ, or segment
            fields of different lengths.
    """
    seq = _parse_example(data, where)
    vid = _video_id(seq.context, where)
    where = f"{where} (video {vid!r})"
    labels = _context_array(seq.context, "labels", "int64_list", np.int64, where)
    ratings = _ratings(seq.context, where)
    rgb, audio = _video_frames(seq.feature_lists, where, max_frames, stats)
    seg_labels, seg_starts, seg_scores = _keep_scorable(ratings, rgb.shape[0], where, stats)
    return Video(
        id=vid,
        rgb=rgb,
        audio=audio,
        labels=labels,
        segment_labels=seg_labels,
        segment_starts=seg_starts,
        segment_scores=seg_scores,
    )


# --------------------------------------------------------------------------------------------------
# Paths, shards and videos


def _is_record_file(p: Path) -> bool:
    return ".tfrecord" in p.name and not p.name.startswith(".")


def expand_paths(paths: Iterable[str | Path] | str | Path) -> list[Path]:
    """Files as given, directories as their ``*.tfrecord*`` files (sorted), globs expanded (sorted).

    Hidden files (e.g. a writer's ``.part-...tmp``) are ignored in directories and globs.

    Raises:
        FileNotFoundError: a path that does not exist, a glob that matches nothing, or a directory
            without ``*.tfrecord*`` files.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and _is_record_file(q))
            if not found:
                raise FileNotFoundError(f"{p}: directory holds no *.tfrecord* files")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif glob.has_magic(str(item)):
            matches = sorted(Path(m) for m in glob.glob(str(item)))
            files: list[Path] = []
            for m in matches:
                if m.is_dir():
                    files.extend(
                        sorted(q for q in m.iterdir() if q.is_file() and _is_record_file(q))
                    )
                elif m.is_file() and not m.name.startswith("."):
                    files.append(m)
            if not files:
                raise FileNotFoundError(f"{item}: pattern matches no files")
            out.extend(files)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def read_videos(
    paths: Iterable[str | Path] | str | Path,
    *,
    skip_corrupt: bool = False,
    progress: bool = False,
    max_frames: int | None = MAX_FRAMES,
    stats: ReadStats | None = None,
) -> Iterator[Video]:
    """Stream the videos of any number of TFRecord files (plain or gzip), in file then record order.

    Memory is constant: one record at a time. Files are resolved by :func:`expand_paths` first (so a
    missing file fails before anything is read).

    Args:
        paths: files, directories or globs.
        skip_corrupt: skip corrupt / malformed records with a warning instead of raising.
        progress: show a tqdm bar over the on-disk bytes.
        max_frames: truncate longer videos (with a warning); None keeps every frame.
        stats: a :class:`ReadStats` to fill in.

    Raises:
        CorruptRecordError, RecordFormatError: unless ``skip_corrupt``; both name file and offset.
    """
    files = expand_paths(paths)
    sizes = [f.stat().st_size for f in files]
    if stats is not None:
        stats.files += len(files)
        stats.bytes += sum(sizes)
    with ExitStack() as stack:
        bar = None
        if progress:
            bar = stack.enter_context(
                tqdm(total=sum(sizes), unit="B", unit_scale=True, desc="reading", leave=False)
            )
        for path in files:
            cb = _PosCallback(bar) if bar is not None else None
            if bar is not None:
                bar.set_postfix_str(path.name, refresh=False)
            for offset, data in _iter_framed(
                path, skip_corrupt=skip_corrupt, stats=stats, on_raw_pos=cb
            ):
                try:
                    video = example_to_video(
                        data,
                        where=f"{path}: record at byte offset {offset}",
                        max_frames=max_frames,
                        stats=stats,
                    )
                except RecordFormatError as err:
                    if not skip_corrupt:
                        raise
                    log.warning("%s; skipped", err)
                    if stats is not None:
                        stats.corrupt_records += 1
                    continue
                if stats is not None:
                    stats.videos += 1
                yield video
            if cb is not None and bar is not None:
                cb(path.stat().st_size)


def shard_paths(
    out_dir: str | Path, *, prefix: str = "part", num_shards: int = 4, compress: bool = False
) -> list[Path]:
    """The file names :func:`write_videos` uses: ``{prefix}-00000-of-00004.tfrecord[.gz]``."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    ext = ".tfrecord.gz" if compress else ".tfrecord"
    return [Path(out_dir) / f"{prefix}-{i:05d}-of-{num_shards:05d}{ext}" for i in range(num_shards)]


def write_videos(
    videos: Iterable[Video],
    out_dir: str | Path,
    *,
    prefix: str = "part",
    num_shards: int = 4,
    compress: bool = False,
    progress: bool = False,
) -> list[Path]:
    """Write videos round-robin into ``num_shards`` files; returns every shard's path (in order).

    Streams: memory is constant in the number of videos. Every shard file is created, even when
    there are fewer videos than shards (an empty TFRecord file is valid). Files appear atomically;
    on an error no partial shard is left behind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = shard_paths(out, prefix=prefix, num_shards=num_shards, compress=compress)
    writers: list[_RecordWriter] = []
    try:
        for p in paths:
            writers.append(_RecordWriter(p, compress=compress))
        it: Iterable[Video] = videos
        if progress:
            it = tqdm(videos, unit="video", desc=f"writing {out}", leave=False)
        for i, video in enumerate(it):
            writers[i % num_shards].write(video_to_example(video))
    except BaseException:
        for w in writers:
            w.close(commit=False)
        raise
    for w in writers:
        w.close()
    return paths
