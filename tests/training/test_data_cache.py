"""The epoch cache: a faithful copy of a split, reused while its sources are unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from service.tfrecord import read_videos, write_videos
from service.yt8m import Video, dequantize
from training import data as data_mod
from training.data import (
    CacheError,
    LengthBucketSampler,
    VideoDataset,
    cache_key,
    collate_padded,
    load_split,
    open_cache,
    source_files,
)

NUM_CLASSES = 6


def _videos(n: int, seed: int) -> list[Video]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = int(rng.integers(0, 23))
        rated = i % 2 == 0 and f >= 5
        r = int(rng.integers(1, 4)) if rated else 0
        out.append(
            Video(
                id=f"vid{seed}_{i}",
                rgb=rng.integers(0, 256, (f, 1024), dtype=np.uint8),
                audio=rng.integers(0, 256, (f, 128), dtype=np.uint8),
                labels=np.unique(rng.integers(0, NUM_CLASSES, int(rng.integers(0, 4)))),
                segment_labels=rng.integers(0, NUM_CLASSES, r),
                segment_starts=rng.integers(0, max(f // 5, 1), r) * 5,
                segment_scores=rng.integers(0, 2, r).astype(np.float32),
            )
        )
    return out


@pytest.fixture()
def split(tmp_path: Path) -> Path:
    write_videos(_videos(11, 0), tmp_path / "corpus" / "train", num_shards=3)
    return tmp_path / "corpus" / "train"


def test_cache_is_a_faithful_copy(split: Path, tmp_path: Path) -> None:
    cache = load_split(split, cache_root=tmp_path / "cache")
    originals = list(read_videos([split]))
    assert len(cache) == len(originals) == 11
    assert cache.num_frames == sum(v.num_frames for v in originals)
    for i, v in enumerate(originals):
        got = cache.video(i)
        assert got.id == v.id
        np.testing.assert_array_equal(got.quantized(), v.quantized())
        np.testing.assert_array_equal(got.labels, v.labels)
        np.testing.assert_array_equal(got.segment_labels, v.segment_labels)
        np.testing.assert_array_equal(got.segment_starts, v.segment_starts)
        np.testing.assert_array_equal(got.segment_scores, v.segment_scores)
    assert isinstance(cache.frames, np.memmap)
    means = cache.mean_frames(chunk=4)
    for i, v in enumerate(originals):
        want = v.features().mean(0) if v.num_frames else np.zeros(1152, np.float32)
        np.testing.assert_allclose(means[i], want, atol=1e-5)
    y = cache.label_matrix(NUM_CLASSES)
    for i, v in enumerate(originals):
        assert set(np.flatnonzero(y[i])) == set(v.labels.tolist())
    with pytest.raises(ValueError, match="num_classes"):
        cache.label_matrix(int(cache.labels.max()))


def test_cache_reused_then_invalidated(
    split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cache"
    first = load_split(split, cache_root=root)
    built = []
    real_build = data_mod.build_cache

    def counting_build(*args: object, **kw: object) -> object:
        built.append(args[1])
        return real_build(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(data_mod, "build_cache", counting_build)
    again = load_split(split, cache_root=root)
    assert built == [] and again.path == first.path  # unchanged sources: no re-read

    # Rewrite one shard with other videos: new key, rebuilt, the stale cache removed.
    shard = source_files(split)[0]
    old_key = cache_key(source_files(split))
    write_videos(_videos(4, 1), split, num_shards=3)
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache_key(source_files(split)) != old_key
    fresh = load_split(split, cache_root=root)
    assert len(built) == 1 and fresh.path != first.path
    assert len(fresh) == 4 and fresh.ids[0] == "vid1_0"
    assert not first.path.exists()
    assert [p.name for p in root.iterdir()] == [fresh.path.name]

    # A damaged cache is detected and rebuilt, not trusted.
    with open(fresh.path / "frames.u8", "r+b") as f:
        f.truncate(10)
    with pytest.raises(CacheError, match=r"frames\.u8"):
        open_cache(fresh.path)
    repaired = load_split(split, cache_root=root)
    assert len(built) == 2 and len(repaired) == 4


def test_missing_split_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_split(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        load_split(tmp_path / "empty")


def test_default_cache_is_next_to_the_data(split: Path) -> None:
    cache = load_split(split)
    assert cache.path.parent == split.parent / ".cache"
    assert cache.path.name.startswith("train-")


def test_dataset_and_padded_batches(split: Path, tmp_path: Path) -> None:
    cache = load_split(split, cache_root=tmp_path / "cache")
    ds = VideoDataset(cache, NUM_CLASSES, indices=[1, 3, 4])
    assert len(ds) == 3
    frames_u8, y = ds[1]
    assert y.shape == (NUM_CLASSES,) and y.dtype == torch.float32
    assert frames_u8.dtype == torch.uint8 and frames_u8.shape == (cache.lengths[3], 1152)
    frames, lengths, labels = collate_padded([ds[k] for k in range(3)])
    assert frames.shape == (3, max(int(cache.lengths[i]) for i in (1, 3, 4)) or 1, 1152)
    assert lengths.tolist() == [int(cache.lengths[i]) for i in (1, 3, 4)]
    assert labels.shape == (3, NUM_CLASSES)
    for k, i in enumerate((1, 3, 4)):
        n = int(cache.lengths[i])
        np.testing.assert_allclose(frames[k, :n].numpy(), dequantize(cache.quantized(i)), atol=1e-6)
        assert torch.all(frames[k, n:] == 0)


def test_length_bucket_sampler() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, 103)
    sampler = LengthBucketSampler(lengths, 8, seed=3, bucket_batches=4)
    sampler.set_epoch(0)
    e0 = list(sampler)
    assert len(e0) == len(sampler) == 13
    assert sorted(i for b in e0 for i in b) == list(range(103))  # every video once
    assert all(len(b) <= 8 for b in e0)
    # within a batch lengths are sorted (descending), so padding stays small
    for b in e0:
        assert list(lengths[b]) == sorted(lengths[b], reverse=True)
    sampler.set_epoch(0)
    assert list(sampler) == e0  # deterministic for (seed, epoch)
    sampler.set_epoch(1)
    assert list(sampler) != e0
    padded = sum(len(b) * lengths[b].max() for b in e0)
    assert padded < sum(8 * 300 for _ in e0)
    with pytest.raises(ValueError, match="batch_size"):
        LengthBucketSampler(lengths, 0)
