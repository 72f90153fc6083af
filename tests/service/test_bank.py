"""The bank as immutable snapshots with O(n D) writes: parity with brute force over the raw
entries, relabel / remove, sharing of untouched classes, compaction, files, the capped max scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service import bank_class as bc
from service.bank import ClassBank, unit_rows

C, D = 6, 8


def entries(n: int = 240, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "embeddings": rng.normal(size=(n, D)),
        "classes": rng.integers(0, C, n),
        "labels": rng.integers(0, 2, n),
        "videos": np.asarray([f"v{i % 30}" for i in range(n)]),
        "starts": (np.arange(n) // 30) * 5,
    }


def make(n: int = 240, seed: int = 0, cap: int = 1000) -> ClassBank:
    return ClassBank.from_entries(**entries(n, seed), num_classes=C, scan_cap=cap)  # type: ignore[arg-type]


def brute_sums(bank: ClassBank, video: str | None) -> tuple[np.ndarray, np.ndarray]:
    """[C, D] sums of unit positives / negatives of other videos, from the flat entries."""
    pos, neg = np.zeros((C, D)), np.zeros((C, D))
    for e, c, lab, v in zip(bank.emb, bank.emb_class, bank.emb_label, bank.emb_video, strict=True):
        if v != video:
            (pos if lab == 1 else neg)[c] += e
    return pos, neg


def test_sums_and_counts_match_the_raw_entries_and_exclude_the_own_video() -> None:
    raw = entries()
    bank = make()
    assert len(bank) == 240 and bank.num_classes == C and bank.dim == D
    np.testing.assert_allclose(np.linalg.norm(bank.emb, axis=1), 1.0, atol=1e-5)
    assert bank.pos_count.tolist() == [
        int(((raw["classes"] == c) & (raw["labels"] == 1)).sum()) for c in range(C)
    ]
    cls = np.arange(C, dtype=np.int64)
    for video in (None, "v3"):
        pos, neg, pos_n, neg_n = bank.other_video_sums(cls, video)
        want_pos, want_neg = brute_sums(bank, video)
        np.testing.assert_allclose(pos, want_pos, atol=1e-5)
        np.testing.assert_allclose(neg, want_neg, atol=1e-5)
        own = bank.emb_video == video
        assert pos_n.tolist() == [
            int(((bank.emb_class == c) & (bank.emb_label == 1) & ~own).sum()) for c in range(C)
        ]
        assert neg_n.sum() == ((bank.emb_label == 0) & ~own).sum()


def test_add_relabel_and_remove_leave_older_snapshots_untouched() -> None:
    bank = make()
    before = {name: np.array(a, copy=True) for name, a in bank.arrays().items()}
    e = np.random.default_rng(5).normal(size=(3, D))
    c = 2
    old_start = int(bank.emb_start[bank.emb_class == c][0])
    old_video = str(bank.emb_video[bank.emb_class == c][0])
    old_label = int(bank.emb_label[bank.emb_class == c][0])
    added = bank.add(
        e, [c, c, c], [1, 0, 1 - old_label], ["new", "new", old_video], [0, 5, old_start]
    )
    assert len(added) == len(bank) + 2  # two new entries and one relabel
    assert (
        int(added.pos_count[c] + added.neg_count[c])
        == int(bank.pos_count[c] + bank.neg_count[c]) + 2
    )
    row = (added.emb_class == c) & (added.emb_video == old_video) & (added.emb_start == old_start)
    assert added.emb_label[row].tolist() == [1 - old_label]
    np.testing.assert_allclose(added.emb[row][0], unit_rows(e[2:3])[0], atol=1e-6)
    removed, labels = added.remove(c, "new", [5, 0])
    assert labels.tolist() == [0, 1]
    assert len(removed) == len(bank)
    gone, labels = removed.remove(c, "new", [0])
    assert labels.tolist() == [-1] and len(gone) == len(removed)
    for name, arr in bank.arrays().items():  # the first snapshot is exactly as it was
        np.testing.assert_array_equal(arr, before[name])
    for b in (added, removed):
        pos, neg = brute_sums(b, None)
        np.testing.assert_allclose(b.pos_sum, pos, atol=1e-5)
        np.testing.assert_allclose(b.neg_sum, neg, atol=1e-5)


def test_a_write_shares_every_other_class_and_the_written_class_rows() -> None:
    """The O(n D) write, structurally: nothing of the other classes is copied, and the written
    class's existing rows are appended to, not copied."""
    bank = make(n=600)
    c = 4
    new = bank.add(np.ones((2, D)), [c, c], [1, 1], ["w", "w"], [0, 5])
    for k in range(C):
        if k != c:
            assert new.view(k) is bank.view(k)
    assert new.view(c).rows is bank.view(c).rows  # same generation: appended in place
    assert new.view(c).n == bank.view(c).n + 2
    again = new.add(np.ones((1, D)), [c], [0], ["w"], [0])  # relabel
    assert again.view(c).rows is bank.view(c).rows and again.view(c).dead == 1


def test_writing_to_an_older_snapshot_branches_instead_of_clobbering() -> None:
    bank = make()
    c = 1
    a = bank.add(np.ones((1, D)), [c], [1], ["a"], [0])
    b = bank.add(-np.ones((1, D)), [c], [0], ["b"], [0])
    assert a.view(c).rows is not b.view(c).rows
    assert set(a.emb_video[a.emb_class == c]) - set(bank.emb_video) == {"a"}
    assert set(b.emb_video[b.emb_class == c]) - set(bank.emb_video) == {"b"}
    assert len(a) == len(b) == len(bank) + 1


def test_many_relabels_compact_the_class_and_keep_sums_exact() -> None:
    bank = make()
    c = 3
    rng = np.random.default_rng(1)
    for i in range(400):
        bank = bank.add(rng.normal(size=(1, D)), [c], [i % 2], ["churn"], [0])
    view = bank.view(c)
    assert view.dead <= view.live + bc.COMPACT_SLACK
    assert view.n <= 2 * view.live + bc.COMPACT_SLACK
    pos, neg = brute_sums(bank, None)
    np.testing.assert_allclose(bank.pos_sum, pos, atol=1e-4)
    np.testing.assert_allclose(bank.neg_sum, neg, atol=1e-4)


def test_without_video_and_from_entries_keep_the_last_of_a_duplicate_key() -> None:
    bank = make()
    w = bank.without_video("v7")
    assert "v7" not in set(w.emb_video) and len(w) == len(bank) - int(
        (bank.emb_video == "v7").sum()
    )
    dup = ClassBank.from_entries(np.eye(2, D), [1, 1], [1, 0], ["x", "x"], [0, 0], num_classes=C)
    assert len(dup) == 1 and dup.emb_label.tolist() == [0]


def brute_max(bank: ClassBank, u: np.ndarray, c: int, label: int, video: str | None) -> np.ndarray:
    sel = (bank.emb_class == c) & (bank.emb_label == label) & (bank.emb_video != video)
    if not sel.any():
        return np.full(u.shape[0], np.nan, np.float32)
    return (u @ bank.emb[sel].T).max(axis=1)


@pytest.mark.parametrize("video", [None, "v4"])
def test_max_cosine_is_exact_where_the_cap_is_not_hit(video: str | None) -> None:
    bank = make(cap=1000)
    u = unit_rows(np.random.default_rng(3).normal(size=(7, D)))
    cls = np.asarray([0, 5, 2], np.int64)
    pmax, nmax = bank.max_cosine(u, cls, video)
    for k, c in enumerate(cls.tolist()):
        np.testing.assert_allclose(pmax[k], brute_max(bank, u, c, 1, video), atol=1e-5)
        np.testing.assert_allclose(nmax[k], brute_max(bank, u, c, 0, video), atol=1e-5)


def test_max_cosine_with_the_cap_hit_scans_a_fixed_sample_whatever_the_order() -> None:
    raw = entries(n=600)
    cap = 4
    a = ClassBank.from_entries(**raw, num_classes=C, scan_cap=cap)  # type: ignore[arg-type]
    perm = np.random.default_rng(2).permutation(600)
    b = ClassBank.from_entries(**{k: v[perm] for k, v in raw.items()}, num_classes=C, scan_cap=cap)  # type: ignore[arg-type]
    u = unit_rows(np.random.default_rng(4).normal(size=(5, D)))
    cls = np.arange(C, dtype=np.int64)
    for x, y in zip(a.max_cosine(u, cls, "v1"), b.max_cosine(u, cls, "v1"), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6)
    for c in range(C):
        view = a.view(c)
        head = min(cap, len(view.sample_pos)) + min(cap, len(view.sample_neg))
        assert view.scan.shape == (head, D) and view.head_pos <= cap
    # the sample follows writes: a new entry whose key hashes lowest enters it at once
    c = 0
    lowest = min(range(2000), key=lambda s: int(bc.key_hashes([bc.video_hash("z")], [s * 5])[0]))
    grown = a.add(np.ones((1, D)), [c], [1], ["z"], [lowest * 5])
    pmax, _ = grown.max_cosine(unit_rows(np.ones((1, D))), np.asarray([c]), None)
    assert pmax[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_save_and_load_round_trip_and_reject_inconsistent_files(tmp_path: Path) -> None:
    bank = make()
    path = bank.save(tmp_path / "bank.npz")
    again = ClassBank.load(path, scan_cap=bank.scan_cap)  # the same cap: the same row order
    for name, arr in bank.arrays().items():
        np.testing.assert_array_equal(getattr(again, name), arr)
    # an older file: entries in any order (not class-major) load the same bank
    a = bank.arrays()
    perm = np.random.default_rng(0).permutation(len(bank))
    shuffled = {k: (v[perm] if k.startswith("emb") else v) for k, v in a.items()}
    np.savez(tmp_path / "old.npz", **shuffled)
    old = ClassBank.load(tmp_path / "old.npz")
    np.testing.assert_allclose(old.pos_sum, bank.pos_sum, atol=1e-5)
    assert old.pos_count.tolist() == bank.pos_count.tolist()
    bad = dict(a, pos_count=a["pos_count"] + 1)
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError, match="pos_count disagrees"):
        ClassBank.load(tmp_path / "bad.npz")
    short = dict(a, emb_start=a["emb_start"][:-1])
    np.savez(tmp_path / "short.npz", **short)
    with pytest.raises(ValueError, match="emb_start has shape"):
        ClassBank.load(tmp_path / "short.npz")


def test_an_empty_bank_scores_and_grows() -> None:
    bank = ClassBank.empty(C, D)
    assert len(bank) == 0 and bank.emb.shape == (0, D)
    pmax, nmax = bank.max_cosine(unit_rows(np.ones((3, D))), np.asarray([1, 2]), None)
    assert np.isnan(pmax).all() and np.isnan(nmax).all()
    grown = bank.add(np.ones((1, D)), [2], [1], ["a"], [0])
    assert grown.pos_count.tolist() == [0, 0, 1, 0, 0, 0] and len(bank) == 0


def sampled_max(bank: ClassBank, u: np.ndarray, c: int, label: int, video: str) -> np.ndarray:
    """Brute force of the capped max: the cap smallest-hash entries of other videos."""
    sel = np.flatnonzero(
        (bank.emb_class == c) & (bank.emb_label == label) & (bank.emb_video != video)
    )
    if not sel.size:
        return np.full(u.shape[0], np.nan, np.float32)
    h = np.asarray(
        [
            int(bc.key_hashes([bc.video_hash(str(bank.emb_video[i]))], [bank.emb_start[i]])[0])
            for i in sel
        ],
        dtype=np.uint64,
    )
    pick = sel[np.argsort(h, kind="stable")[: bank.scan_cap]]
    return (u @ bank.emb[pick].T).max(axis=1)


def test_the_capped_max_never_depends_on_the_videos_own_labels() -> None:
    """With the cap hit, a video's max-cosine features are the max over the cap smallest-hash
    entries of *other* videos: flipping or dropping its own labels changes nothing for it."""
    rng = np.random.default_rng(7)
    n = 400
    videos = np.asarray([f"v{i % 40}" for i in range(n)])
    videos[:30] = "big"  # a video with 30 entries of class 0: more than the top-up reserve
    raw = {
        "embeddings": rng.normal(size=(n, D)),
        "classes": np.where(np.arange(n) < 40, 0, rng.integers(1, 3, n)),
        "labels": np.where(np.arange(n) < 30, 1, rng.integers(0, 2, n)),
        "videos": videos,
        "starts": np.arange(n) * 5,
    }
    cap = 4
    bank = ClassBank.from_entries(**raw, num_classes=C, scan_cap=cap)  # type: ignore[arg-type]
    view = bank.view(0)
    assert view.rows is not None
    kept_big = sum(view.rows.video[r] == "big" for r in view.sample_pos.tolist())
    assert kept_big > len(view.sample_pos) - cap  # "big" needs the search of the whole group
    u = unit_rows(rng.normal(size=(6, D)))
    cls = np.asarray([0, 1, 2], np.int64)
    for video in ("big", "v3", "v31"):
        pmax, nmax = bank.max_cosine(u, cls, video)
        flipped = bank.add(
            bank.emb[bank.emb_video == video],
            bank.emb_class[bank.emb_video == video],
            1 - bank.emb_label[bank.emb_video == video],
            [video] * int((bank.emb_video == video).sum()),
            bank.emb_start[bank.emb_video == video],
        )
        for other in (flipped, bank.without_video(video)):
            p2, n2 = other.max_cosine(u, cls, video)
            np.testing.assert_allclose(p2, pmax, atol=1e-6)
            np.testing.assert_allclose(n2, nmax, atol=1e-6)
        for k, c in enumerate(cls.tolist()):
            np.testing.assert_allclose(pmax[k], sampled_max(bank, u, c, 1, video), atol=1e-5)
            np.testing.assert_allclose(nmax[k], sampled_max(bank, u, c, 0, video), atol=1e-5)


def test_a_pickled_bank_comes_back_the_same() -> None:
    """Dask sends the bank to its workers by pickle: the same entries, sums and max features."""
    import pickle

    bank = make(cap=3).add(np.ones((2, D)), [1, 1], [1, 0], ["p", "p"], [0, 5])
    back = pickle.loads(pickle.dumps(bank))
    for name, arr in bank.arrays().items():
        np.testing.assert_array_equal(getattr(back, name), arr)
    u = unit_rows(np.random.default_rng(0).normal(size=(4, D)))
    cls = np.arange(C, dtype=np.int64)
    for a, b in zip(bank.max_cosine(u, cls, "v2"), back.max_cosine(u, cls, "v2"), strict=True):
        np.testing.assert_array_equal(a, b)
