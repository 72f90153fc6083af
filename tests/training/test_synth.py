"""Tests of the synthetic corpus: layout, determinism, statistics, and a real structure."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from service.tfrecord import read_videos
from service.vocab import read_segment_label_ids, read_vocabulary
from service.yt8m import SEGMENT_FRAMES, Video
from training.synth import (
    SPLITS,
    VOCABULARY_COLUMNS,
    SynthConfig,
    VideoTruth,
    World,
    build_world,
    generate_split,
    run_synth,
)

# A mid-size corpus generated in memory (with its ground truth) for the statistical tests.
STATS_CONFIG = SynthConfig(videos=600, classes=60, seed=3, max_frames=200)
Corpus = tuple[World, dict[str, list[tuple[Video, VideoTruth]]]]


@pytest.fixture(scope="module")
def stats_corpus() -> Corpus:
    world = build_world(STATS_CONFIG)
    splits = {s: list(generate_split(world, s, with_truth=True)) for s in SPLITS}
    return world, splits  # type: ignore[return-value]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _segment_means(video: Video) -> np.ndarray:
    """Dequantized mean feature of every whole segment: float32 [S, 1152]."""
    x = video.features()
    s = video.num_segments
    return np.asarray(x[: s * SEGMENT_FRAMES].reshape(s, SEGMENT_FRAMES, -1).mean(axis=1))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_layout_csvs_and_metadata(tiny_corpus: Path) -> None:
    for split in SPLITS:
        shards = sorted((tiny_corpus / split).glob("*.tfrecord"))
        assert [p.name for p in shards] == [f"part-0000{i}-of-00002.tfrecord" for i in range(2)]
    with (tiny_corpus / "vocabulary.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == VOCABULARY_COLUMNS
    assert [int(r[0]) for r in rows[1:]] == list(range(20))
    assert all(len(r) == len(VOCABULARY_COLUMNS) for r in rows)
    assert any("," in r[3] for r in rows[1:]) or any('"' in r[8] for r in rows[1:])
    counts = [int(r[1]) for r in rows[1:]]
    vocab = read_vocabulary(tiny_corpus / "vocabulary.csv")
    assert len(set(vocab.names.values())) == 20  # unique names
    rated = read_segment_label_ids(tiny_corpus / "segment_label_ids.csv")
    assert (tiny_corpus / "segment_label_ids.csv").read_text().splitlines()[0] == "Index"
    assert len(rated) == 12 and np.all(np.diff(rated) > 0) and rated.max() < 20
    meta = json.loads((tiny_corpus / "synth.json").read_text())
    assert meta["seed"] == 7 and meta["config"]["classes"] == 20
    assert meta["config"]["min_frames"] == 30 and meta["config"]["max_frames"] == 90
    assert meta["split_sizes"] == {"train": 72, "validate": 30, "test": 18}
    assert meta["rated_classes"] == rated.tolist()
    # TrainVideoCount is the real count of train video labels.
    train = list(read_videos(tiny_corpus / "train"))
    observed = np.bincount(np.concatenate([v.labels for v in train]), minlength=20)
    assert counts == observed.tolist()


def test_records_read_back(tiny_corpus: Path) -> None:
    ids: set[str] = set()
    lengths: list[int] = []
    rated = set(read_segment_label_ids(tiny_corpus / "segment_label_ids.csv").tolist())
    for split, n in zip(SPLITS, (72, 30, 18), strict=True):
        videos = list(read_videos(tiny_corpus / split))
        assert len(videos) == n
        for v in videos:
            assert v.id not in ids and ":" not in v.id
            ids.add(v.id)
            lengths.append(v.num_frames)
            assert 1 <= len(v.labels) <= 5 and np.all(np.diff(v.labels) > 0)
            if split == "train":
                assert not v.is_rated
                continue
            assert v.is_rated and set(v.segment_labels.tolist()) <= rated
            assert set(v.segment_labels.tolist()) <= set(v.labels.tolist())
            assert np.all(v.segment_starts % SEGMENT_FRAMES == 0)
            assert np.all(v.segment_starts + SEGMENT_FRAMES <= v.num_frames)
            assert set(v.segment_scores.tolist()) <= {0.0, 1.0}
    assert min(lengths) >= 30 and max(lengths) <= 90
    assert any(n % SEGMENT_FRAMES for n in lengths)  # not all lengths are multiples of 5


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    args = {"videos": 24, "classes": 8, "shards": 2, "min_frames": 20, "max_frames": 40}
    run_synth(tmp_path / "a", seed=1, progress=False, **args)  # type: ignore[arg-type]
    run_synth(tmp_path / "b", seed=1, progress=False, **args)  # type: ignore[arg-type]
    run_synth(tmp_path / "c", seed=2, progress=False, **args)  # type: ignore[arg-type]
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert len(a) == 3 * 2 + 3 and a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k != "segment_label_ids.csv")
    run_synth(tmp_path / "g1", seed=1, gzip=True, progress=False, **args)  # type: ignore[arg-type]
    run_synth(tmp_path / "g2", seed=1, gzip=True, progress=False, **args)  # type: ignore[arg-type]
    g1 = _digest(tmp_path / "g1")
    assert g1 == _digest(tmp_path / "g2")
    assert "train/part-00000-of-00002.tfrecord.gz" in g1
    plain = [v.rgb for v in read_videos(tmp_path / "a" / "test")]
    gz = [v.rgb for v in read_videos(tmp_path / "g1" / "test")]
    assert len(plain) == len(gz) and all(
        np.array_equal(x, y) for x, y in zip(plain, gz, strict=True)
    )


def test_cli_writes_a_corpus(tmp_path: Path) -> None:
    from ccrl.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["synth", str(out), "--videos", "12", "--classes", "6"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "synth.json").read_text())
    assert meta["config"]["videos"] == 12 and meta["config"]["classes"] == 6
    assert len(list(read_videos(out / "validate"))) == meta["split_sizes"]["validate"]


def test_bad_knobs_are_named() -> None:
    with pytest.raises(ValueError, match="classes must be >= 4"):
        build_world(SynthConfig(classes=2))
    with pytest.raises(ValueError, match="min_frames"):
        build_world(SynthConfig(min_frames=50, max_frames=40))
    with pytest.raises(ValueError, match="max_frames"):
        build_world(SynthConfig(max_frames=301))
    with pytest.raises(ValueError, match="shards must be >= 1"):
        run_synth(Path("unused"), videos=10, classes=5, shards=0, progress=False)


def test_label_and_rating_statistics(stats_corpus: Corpus) -> None:
    world, splits = stats_corpus
    train = [v for v, _ in splits["train"]]
    n_labels = np.array([len(v.labels) for v in train])
    assert n_labels.min() == 1 and n_labels.max() == 5
    assert 1.8 <= n_labels.mean() <= 3.0
    counts = np.bincount(np.concatenate([v.labels for v in train]), minlength=60)
    assert counts.max() >= 3 * np.median(counts)  # Zipf-like: a head and a long tail
    assert np.argmax(counts) < 10  # ids are ordered by frequency, as in the real vocabulary
    lengths = np.array([v.num_frames for v in train])
    assert 100 <= lengths.mean() <= 150 and lengths.min() >= 60 and lengths.max() <= 200

    rated = [v for s in ("validate", "test") for v, _ in splits[s]]
    assert all(set(v.segment_labels.tolist()) <= set(v.labels.tolist()) for v in rated)
    per_video = np.array([len(v.segment_labels) for v in rated])
    assert 4.3 <= per_video.mean() <= 5.7
    scores = np.concatenate([v.segment_scores for v in rated])
    assert 0.48 <= scores.mean() <= 0.62  # ~55% positive
    main_class_share = np.mean(
        [np.mean(v.segment_labels == np.bincount(v.segment_labels).argmax()) for v in rated]
    )
    assert main_class_share > 0.9  # each video is rated mostly for one class
    per_class = np.bincount(np.concatenate([v.segment_labels for v in rated]), minlength=60)
    assert set(np.flatnonzero(per_class).tolist()) == set(world.rated.tolist())
    on_rated = per_class[world.rated]
    assert on_rated.max() <= 2.5 * on_rated.min()  # even over rated classes, unlike video labels
    assert len(world.rated) == 36  # 60% of the classes


def test_values_are_quantized_and_not_saturated(stats_corpus: Corpus) -> None:
    _, splits = stats_corpus
    for v, _ in splits["test"][:20]:
        assert v.rgb.dtype == np.uint8 and v.audio.dtype == np.uint8
        x = v.features()
        assert x.min() >= -2.0 and x.max() <= 2.0 + 1 / 128  # dequantize(255) = 2 + 1/128
        saturated = np.mean((v.quantized() == 0) | (v.quantized() == 255))
        assert saturated < 0.001
        assert 0.2 < float(x.std()) < 0.8


def test_hierarchy_geometry(stats_corpus: Corpus) -> None:
    world, _ = stats_corpus
    protos = np.stack([world.prototype(c) for c in range(world.num_classes)])
    unit = protos / np.linalg.norm(protos, axis=1, keepdims=True)
    sim = unit @ unit.T
    same_cluster = world.cluster_of[:, None] == world.cluster_of[None, :]
    same_vertical = world.vertical_of[:, None] == world.vertical_of[None, :]
    off = ~np.eye(world.num_classes, dtype=bool)
    siblings = sim[same_cluster & off].mean()
    cousins = sim[same_vertical & ~same_cluster].mean()
    strangers = sim[~same_vertical].mean()
    assert siblings > cousins + 0.15 > strangers + 0.3
    assert all(len(world.siblings[c]) >= 1 for c in range(world.num_classes))


def test_positive_segments_look_like_their_class(stats_corpus: Corpus) -> None:
    """Positive segments of c point toward c's prototype more than its rated negatives do."""
    world, splits = stats_corpus
    rated = splits["validate"] + splits["test"]
    centre = np.mean([v.features().mean(axis=0) for v, _ in rated], axis=0)
    pos: dict[int, list[np.ndarray]] = {}
    neg: dict[int, list[np.ndarray]] = {}
    for v, _ in rated:
        means = _segment_means(v) - centre
        for c, start, score in zip(
            v.segment_labels, v.segment_starts, v.segment_scores, strict=True
        ):
            (pos if score > 0.5 else neg).setdefault(int(c), []).append(means[start // 5])
    wins = []
    for c in world.rated:
        p = world.prototype(int(c))
        wins.append(_cos(np.mean(pos[c], axis=0), p) > _cos(np.mean(neg[c], axis=0), p))
    assert np.mean(wins) >= 0.9
    # Both modalities carry the class: each part alone separates positives from negatives.
    for part in (slice(0, 1024), slice(1024, 1152)):
        gaps = [
            _cos(np.mean(pos[c], axis=0)[part], world.prototype(int(c))[part])
            - _cos(np.mean(neg[c], axis=0)[part], world.prototype(int(c))[part])
            for c in world.rated
        ]
        assert np.mean(np.array(gaps) > 0) >= 0.8 and np.mean(gaps) > 0.03


def test_video_labels_are_not_segment_labels(stats_corpus: Corpus) -> None:
    world, splits = stats_corpus
    truths = [t for s in SPLITS for _, t in splits[s]]
    videos = [v for s in SPLITS for v, _ in splits[s]]
    shown_share = [np.mean(t.presence == c) for t in truths for c in t.classes]
    assert max(shown_share) < 0.86 and np.median(shown_share) < 0.5  # only stretches
    missing = sum(
        len(np.setdiff1d(t.classes, v.labels)) for v, t in zip(videos, truths, strict=True)
    )
    spurious = sum(
        len(np.setdiff1d(v.labels, t.classes)) for v, t in zip(videos, truths, strict=True)
    )
    n = sum(len(t.classes) for t in truths)
    # Rated videos whose rated class is absent carry it as a spurious label on purpose (see
    # test_some_rated_videos_do_not_show_their_class); the label-noise rate is train's.
    train_spurious = sum(len(np.setdiff1d(v.labels, t.classes)) for v, t in splits["train"])
    assert 0.02 < missing / n < 0.15 and 0.01 < train_spurious / len(splits["train"]) < 0.15
    assert spurious >= train_spurious
    # Rated negatives include look-alike siblings (hard negatives).
    hard = total = 0
    for v, t in splits["validate"] + splits["test"]:
        for c, start, score in zip(
            v.segment_labels, v.segment_starts, v.segment_scores, strict=True
        ):
            if score < 0.5:
                shown = t.presence[start : start + SEGMENT_FRAMES]
                hard += int(np.isin(shown, world.siblings[int(c)]).sum() >= 3)
                total += 1
    assert hard / total > 0.15


def test_labelled_segments_of_other_videos_are_informative(
    stats_corpus: Corpus,
) -> None:
    """SIMpos - SIMneg against the validate ratings ranks the test ratings well above chance."""
    _, splits = stats_corpus
    centre = np.mean([v.features().mean(axis=0) for v, _ in splits["train"][:100]], axis=0)

    def rows(split: str) -> dict[int, list[tuple[np.ndarray, float]]]:
        out: dict[int, list[tuple[np.ndarray, float]]] = {}
        for v, _ in splits[split]:
            means = _segment_means(v) - centre
            means /= np.linalg.norm(means, axis=1, keepdims=True)
            for c, start, score in zip(
                v.segment_labels, v.segment_starts, v.segment_scores, strict=True
            ):
                out.setdefault(int(c), []).append((means[start // 5], float(score)))
        return out

    bank, query = rows("validate"), rows("test")
    gains = []
    for c, items in query.items():
        b = np.stack([e for e, _ in bank[c]])
        lab = np.array([s for _, s in bank[c]])
        q = np.stack([e for e, _ in items])
        y = np.array([s for _, s in items])
        if y.sum() in (0, len(y)) or lab.sum() in (0, len(lab)):
            continue
        sim = q @ b.T
        f = sim[:, lab > 0.5].mean(axis=1) - sim[:, lab < 0.5].mean(axis=1)
        order = np.argsort(-f)
        hits = y[order]
        ap = float(np.sum(np.cumsum(hits) / np.arange(1, len(hits) + 1) * hits) / hits.sum())
        gains.append(ap - y.mean())
    assert len(gains) >= 20 and np.mean(gains) > 0.15


def _ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of one ranking (labels 0/1, at least one positive)."""
    hits = labels[np.argsort(-scores, kind="stable")]
    return float(np.sum(np.cumsum(hits) / np.arange(1, len(hits) + 1) * hits) / hits.sum())


def test_video_level_is_learnable_from_noisy_labels(stats_corpus: Corpus) -> None:
    """A ridge classifier on mean frames of train/ finds the videos showing c in validate/."""
    world, splits = stats_corpus
    x_train = np.stack([v.features().mean(axis=0) for v, _ in splits["train"]])
    y_train = np.zeros((len(x_train), world.num_classes))
    for i, (v, _) in enumerate(splits["train"]):
        y_train[i, v.labels] = 1.0
    mu, sd = x_train.mean(axis=0), x_train.std(axis=0)
    z = (x_train - mu) / sd
    w = np.linalg.solve(z.T @ z + 300.0 * np.eye(z.shape[1]), z.T @ (y_train - y_train.mean(0)))
    val = splits["validate"]
    scores = ((np.stack([v.features().mean(axis=0) for v, _ in val]) - mu) / sd) @ w
    aps = []
    for c in world.rated:
        shown = np.array([c in t.classes for _, t in val], dtype=float)
        aps.append(_ap(scores[:, c], shown))
    print(f"video-level ridge AP {np.mean(aps):.3f}")
    assert np.mean(aps) > 0.8


def test_segment_level_is_real_but_not_trivial(stats_corpus: Corpus) -> None:
    """Even knowing the true prototypes, the rated segments of a class are not perfectly ranked."""
    world, splits = stats_corpus
    rated = splits["validate"] + splits["test"]
    centre = np.mean([v.features().mean(axis=0) for v, _ in rated], axis=0)
    rows: dict[int, list[tuple[float, float]]] = {}
    for v, _ in rated:
        means = _segment_means(v) - centre
        for c, start, score in zip(
            v.segment_labels, v.segment_starts, v.segment_scores, strict=True
        ):
            p = world.prototype(int(c))
            rows.setdefault(int(c), []).append((_cos(means[start // 5], p), float(score)))
    aps, chance = [], []
    for items in rows.values():
        s, y = np.array([a for a, _ in items]), np.array([b for _, b in items])
        if 0 < y.sum() < len(y):
            aps.append(_ap(s, y))
            chance.append(y.mean())
    print(f"prototype-oracle AP {np.mean(aps):.3f}, chance {np.mean(chance):.3f}")
    assert np.mean(chance) + 0.15 < np.mean(aps) < 0.97
    # The main topic (the rated class) is shown on a real share of its video, never all of it
    # (videos whose rated class is absent are the other test's subject).
    shares = [np.mean(t.presence == t.rated[0]) for _, t in rated if t.rated[0] in t.classes]
    assert min(shares) >= 0.12 and max(shares) <= 0.85


def test_some_rated_videos_do_not_show_their_class(stats_corpus: Corpus) -> None:
    """Like the real data: raters are sent to videos by (noisy) video labels, so some videos rated
    for c do not show c at all; they are labelled c, show a look-alike sibling, and every rating
    of c in them is negative. These are what candidate generation can remove from c's list."""
    world, splits = stats_corpus
    absent = present = 0
    for v, t in splits["validate"] + splits["test"]:
        for c in np.unique(v.segment_labels):
            scores = v.segment_scores[v.segment_labels == c]
            if c in t.classes:
                present += 1
                assert scores.max() == 1.0  # a video showing its rated class has a positive
            else:
                absent += 1
                assert scores.max() == 0.0 and c in v.labels
                assert np.isin(t.presence, world.siblings[int(c)]).any()
    share = absent / (absent + present)
    assert 0.1 < share < 0.3, share  # absent_rated_prob = 0.2
