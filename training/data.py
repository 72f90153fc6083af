"""The epoch cache: a split's TFRecords read once into a compact, memory-mapped on-disk copy.

Training reads a split many times; parsing protobufs each epoch would bind it to the parser. A
:class:`FrameCache` holds one split as

- ``frames.u8``: every frame of every video, uint8 [N, 1152] (quantized rgb then audio), raw bytes
  opened with ``np.memmap``;
- ``index.npz``: ``offsets`` i64[V+1] (video v's frames are rows ``offsets[v]:offsets[v+1]``),
  ``label_offsets`` i64[V+1] + ``labels`` i64[...] (video labels, CSR), ``seg_offsets`` i64[V+1] +
  ``seg_labels`` i64, ``seg_starts`` i64, ``seg_scores`` f32 (segment ratings, CSR), ``ids`` <U[V];
- ``meta.json``: the cache key, the source files, counts, the format version.

The cache lives in ``{cache_root}/{split}-{key}/`` where ``key`` hashes the source files' names,
sizes and modification times (and the format version): changing a source file builds a new cache and
removes the stale one. ``cache_root`` defaults to ``{split_dir}/../.cache`` (next to the data), or
``~/.cache/ccrl`` when that is not writable.

:class:`VideoDataset` and :class:`LengthBucketSampler` turn a cache into padded training batches
(sorting by length within buckets keeps LSTM padding small).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset, Sampler

from service.yt8m import FEATURE_DIM, Video, dequantize

CACHE_VERSION = 1
_I64 = npt.NDArray[np.int64]


class CacheError(RuntimeError):
    """A cache folder is unreadable or inconsistent (its path is in the message)."""


def source_files(split_dir: Path) -> list[Path]:
    """The TFRecord shards of a split folder (sorted); raises ``FileNotFoundError`` when none."""
    from service.tfrecord import expand_paths

    split_dir = Path(split_dir)
    if not split_dir.exists():
        raise FileNotFoundError(f"split folder {split_dir} does not exist")
    files = expand_paths([split_dir])
    if not files:
        raise FileNotFoundError(f"no *.tfrecord files in {split_dir}")
    return files


def cache_key(files: Sequence[Path]) -> str:
    """A 16-hex-digit key over the files' names, sizes and mtimes (and the cache format version)."""
    h = hashlib.sha256(f"ccrl-cache-v{CACHE_VERSION}".encode())
    for f in files:
        st = Path(f).stat()
        h.update(f"\0{Path(f).resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def default_cache_root(split_dir: Path) -> Path:
    """``{split_dir}/../.cache`` when writable, else ``~/.cache/ccrl``."""
    root = Path(split_dir).resolve().parent / ".cache"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    fallback = Path.home() / ".cache" / "ccrl"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


@dataclass
class FrameCache:
    """One split, memory-mapped: ``frames`` uint8 [N, 1152]; the other arrays as described above."""

    path: Path
    frames: np.memmap
    offsets: _I64
    label_offsets: _I64
    labels: _I64
    seg_offsets: _I64
    seg_labels: _I64
    seg_starts: _I64
    seg_scores: npt.NDArray[np.float32]
    ids: npt.NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> _I64:
        """Frames per video, i64 [V]."""
        return np.diff(self.offsets)

    @property
    def num_frames(self) -> int:
        return int(self.offsets[-1])

    def quantized(self, i: int) -> npt.NDArray[np.uint8]:
        """Video ``i``'s frames, uint8 [F, 1152] (a view into the memory map)."""
        return self.frames[self.offsets[i] : self.offsets[i + 1]]

    def video_labels(self, i: int) -> _I64:
        """Video ``i``'s video-level labels, i64 [L]."""
        return self.labels[self.label_offsets[i] : self.label_offsets[i + 1]]

    def max_label(self) -> int:
        """The largest class id among video labels and segment ratings (-1 when none)."""
        m = -1
        if len(self.labels):
            m = max(m, int(self.labels.max()))
        if len(self.seg_labels):
            m = max(m, int(self.seg_labels.max()))
        return m

    def label_matrix(self, num_classes: int) -> npt.NDArray[np.float32]:
        """Multi-hot video labels, float32 [V, num_classes]; raises if a label is out of range."""
        if len(self.labels) and int(self.labels.max()) >= num_classes:
            raise ValueError(
                f"{self.path}: label {int(self.labels.max())} >= num_classes {num_classes}"
            )
        y = np.zeros((len(self), num_classes), dtype=np.float32)
        rows = np.repeat(np.arange(len(self)), np.diff(self.label_offsets))
        y[rows, self.labels] = 1.0
        return y

    def video(self, i: int) -> Video:
        """Video ``i`` as a :class:`~service.yt8m.Video` (frames copied out of the map)."""
        q = np.array(self.quantized(i))
        a, b = self.seg_offsets[i], self.seg_offsets[i + 1]
        return Video(
            id=str(self.ids[i]),
            rgb=q[:, :1024],
            audio=q[:, 1024:],
            labels=self.video_labels(i).copy(),
            segment_labels=self.seg_labels[a:b].copy(),
            segment_starts=self.seg_starts[a:b].copy(),
            segment_scores=self.seg_scores[a:b].copy(),
        )

    def videos(self, indices: Sequence[int] | None = None) -> Iterator[Video]:
        """Iterate the videos (all, or ``indices``) as :class:`~service.yt8m.Video` records."""
        for i in range(len(self)) if indices is None else indices:
            yield self.video(int(i))

    def mean_frames(self, chunk: int = 256) -> npt.NDArray[np.float32]:
        """Each video's mean dequantized frame, float32 [V, 1152] (reads the map once)."""
        out = np.zeros((len(self), FEATURE_DIM), dtype=np.float32)
        for a in range(0, len(self), chunk):
            b = min(a + chunk, len(self))
            lo, hi = int(self.offsets[a]), int(self.offsets[b])
            block = np.asarray(self.frames[lo:hi], dtype=np.float32)
            starts = self.offsets[a:b] - lo
            lens = np.diff(self.offsets[a : b + 1])
            nonempty = lens > 0
            sums = np.zeros((b - a, FEATURE_DIM), dtype=np.float32)
            if nonempty.any():
                sums[nonempty] = np.add.reduceat(block, starts[nonempty], axis=0)
            mean_q = sums / np.maximum(lens, 1)[:, None]
            out[a:b] = dequantize(mean_q, np.float64)
            out[a:b][~nonempty] = 0.0
        return out

    def frame_stats(
        self, max_frames: int = 200_000, seed: int = 0
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Per-feature mean and std of dequantized frames (a sample of rows), float32 [1152]."""
        n = self.num_frames
        if n == 0:
            return np.zeros(FEATURE_DIM, np.float32), np.ones(FEATURE_DIM, np.float32)
        rows = np.arange(n)
        if n > max_frames:
            rows = np.sort(np.random.default_rng(seed).choice(n, size=max_frames, replace=False))
        x = dequantize(self.frames[rows], np.float64)
        return x.mean(0).astype(np.float32), x.std(0).astype(np.float32)


def open_cache(path: Path) -> FrameCache:
    """Open a built cache folder; raises :class:`CacheError` naming the folder when inconsistent."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
        with np.load(path / "index.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError) as e:
        raise CacheError(f"cache {path} is unreadable: {e}") from e
    n = int(arrays["offsets"][-1])
    if meta.get("version") != CACHE_VERSION or meta.get("num_frames") != n:
        raise CacheError(f"cache {path}: meta.json does not match index.npz")
    expected = n * FEATURE_DIM
    size = (path / "frames.u8").stat().st_size
    if size != expected:
        raise CacheError(f"cache {path}: frames.u8 has {size} bytes, expected {expected}")
    frames = (
        np.memmap(path / "frames.u8", dtype=np.uint8, mode="r", shape=(n, FEATURE_DIM))
        if n
        else np.zeros((0, FEATURE_DIM), np.uint8).view(np.memmap)
    )
    return FrameCache(
        path=path,
        frames=frames,
        offsets=arrays["offsets"],
        label_offsets=arrays["label_offsets"],
        labels=arrays["labels"],
        seg_offsets=arrays["seg_offsets"],
        seg_labels=arrays["seg_labels"],
        seg_starts=arrays["seg_starts"],
        seg_scores=arrays["seg_scores"],
        ids=arrays["ids"],
    )


def build_cache(files: Sequence[Path], dest: Path, *, progress: bool = False) -> FrameCache:
    """Read ``files`` once with ``read_videos`` into a new cache folder ``dest`` (atomically)."""
    from service.tfrecord import read_videos

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
    try:
        offsets, label_offsets, seg_offsets = [0], [0], [0]
        labels: list[np.ndarray] = []
        seg_labels: list[np.ndarray] = []
        seg_starts: list[np.ndarray] = []
        seg_scores: list[np.ndarray] = []
        ids: list[str] = []
        with open(tmp / "frames.u8", "wb") as out:
            for v in read_videos(list(files), progress=progress):
                q = np.ascontiguousarray(v.quantized())
                out.write(q.tobytes())
                offsets.append(offsets[-1] + v.num_frames)
                labels.append(np.asarray(v.labels, np.int64))
                label_offsets.append(label_offsets[-1] + len(v.labels))
                seg_labels.append(np.asarray(v.segment_labels, np.int64))
                seg_starts.append(np.asarray(v.segment_starts, np.int64))
                seg_scores.append(np.asarray(v.segment_scores, np.float32))
                seg_offsets.append(seg_offsets[-1] + len(v.segment_labels))
                ids.append(v.id)

        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        np.savez(
            tmp / "index.npz",
            offsets=np.asarray(offsets, np.int64),
            label_offsets=np.asarray(label_offsets, np.int64),
            labels=cat(labels, np.int64),
            seg_offsets=np.asarray(seg_offsets, np.int64),
            seg_labels=cat(seg_labels, np.int64),
            seg_starts=cat(seg_starts, np.int64),
            seg_scores=cat(seg_scores, np.float32),
            ids=np.asarray(ids, dtype=np.str_),
        )
        meta = {
            "version": CACHE_VERSION,
            "num_videos": len(ids),
            "num_frames": offsets[-1],
            "sources": [
                {"path": str(Path(f).resolve()), "size": Path(f).stat().st_size} for f in files
            ],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_cache(dest)


def load_split(
    split_dir: Path, *, cache_root: Path | None = None, progress: bool = False
) -> FrameCache:
    """The cache of a split folder: reused when its sources are unchanged, else (re)built.

    Stale caches of the same split (other keys) under ``cache_root`` are removed.
    """
    split_dir = Path(split_dir)
    files = source_files(split_dir)
    key = cache_key(files)
    root = Path(cache_root) if cache_root is not None else default_cache_root(split_dir)
    name = split_dir.resolve().name
    dest = root / f"{name}-{key}"
    if dest.is_dir():
        try:
            return open_cache(dest)
        except CacheError:
            shutil.rmtree(dest, ignore_errors=True)
    cache = build_cache(files, dest, progress=progress)
    for stale in root.glob(f"{name}-*"):
        if stale != dest and stale.is_dir() and ".tmp-" not in stale.name:
            shutil.rmtree(stale, ignore_errors=True)
    return cache


# --------------------------------------------------------------------------------------------
# Torch views
# --------------------------------------------------------------------------------------------


class VideoDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Videos ``indices`` of a cache as (uint8 frames [F, 1152], multi-hot labels float32 [C])."""

    def __init__(
        self,
        cache: FrameCache,
        num_classes: int,
        indices: Sequence[int] | npt.NDArray[np.int64] | None = None,
    ) -> None:
        self.cache = cache
        self.indices = np.arange(len(cache)) if indices is None else np.asarray(indices, np.int64)
        self.targets = cache.label_matrix(num_classes)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(self.indices[k])
        return torch.from_numpy(np.array(self.cache.quantized(i))), torch.from_numpy(
            self.targets[i]
        )

    @property
    def lengths(self) -> _I64:
        return self.cache.lengths[self.indices]


def collate_padded(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Items -> (frames f32 [B, T, 1152], zero-padded; lengths i64 [B]; labels [B, C])."""
    lengths = torch.tensor([x.shape[0] for x, _ in batch], dtype=torch.int64)
    t = max(int(lengths.max()), 1)
    frames = torch.zeros(len(batch), t, FEATURE_DIM, dtype=torch.float32)
    for j, (x, _) in enumerate(batch):
        frames[j, : x.shape[0]] = torch.from_numpy(dequantize(x.numpy()))
    return frames, lengths, torch.stack([y for _, y in batch])


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of dataset positions: shuffled, sorted by length within buckets, batches shuffled.

    Deterministic for (seed, epoch): call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        lengths: Sequence[int] | npt.NDArray[np.int64],
        batch_size: int,
        *,
        seed: int = 0,
        bucket_batches: int = 20,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = np.asarray(lengths, np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.bucket = batch_size * bucket_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        batches: list[list[int]] = []
        for a in range(0, len(order), self.bucket):
            chunk = order[a : a + self.bucket]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(
                chunk[b : b + self.batch_size].tolist()
                for b in range(0, len(chunk), self.batch_size)
            )
        for j in rng.permutation(len(batches)):
            yield batches[j]
