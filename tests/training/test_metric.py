"""The challenge metric: hand-computed cases, a naive reference, the submission file, the CLI."""

from __future__ import annotations

import gzip
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from training.metric import (
    Ratings,
    average_precision,
    candidate_recall,
    format_report,
    mean_average_precision,
    per_class_average_precision,
    positives_by_video,
    recall_at_k,
    score_class,
    score_submission,
)
from training.submission import SubmissionError, iter_submission, read_submission, write_submission

# --------------------------------------------------------------------------------------------
# A deliberately naive reference, straight from the formula (no shortcuts, simple loops).


def naive_ap(ranked: Sequence[str], rated: Mapping[str, int], top: int) -> float:
    submitted = []
    for i, token in enumerate(ranked):
        if i < top:  # the list as submitted holds at most `top` entries
            submitted.append(token)
    kept: list[str] = []
    for token in submitted:
        if token in rated and token not in kept:  # rated for this class, first occurrence
            kept.append(token)
    n_c = 0
    for value in rated.values():
        if value == 1:
            n_c += 1
    if n_c == 0:
        return 0.0
    total = 0.0
    for k in range(1, len(kept) + 1):
        rel_k = 1 if rated[kept[k - 1]] == 1 else 0
        relevant_in_top_k = 0
        for j in range(k):
            if rated[kept[j]] == 1:
                relevant_in_top_k += 1
        total += (relevant_in_top_k / k) * rel_k
    return total / n_c


def naive_map(
    predictions: Mapping[int, Sequence[str]], ratings: Mapping[int, Mapping[str, int]], top: int
) -> float:
    aps = []
    for c, rated in ratings.items():
        if 1 not in rated.values():
            continue  # a class without positives is not scored
        aps.append(naive_ap(predictions.get(c, []), rated, top))
    return sum(aps) / len(aps) if aps else 0.0


# --------------------------------------------------------------------------------------------
# Hand-computed average precision

RATED_1 = {"a:0": 1, "b:0": 0, "c:0": 1}


def test_unrated_and_other_class_segments_are_dropped() -> None:
    # "u:0" is rated for no class, "x:0" only for class 2: both removed before scoring class 1.
    # Kept list: a(+) b(-) c(+). Prec(1) = 1/1, Prec(3) = 2/3, N = 2 -> (1 + 2/3) / 2 = 5/6.
    ranked = ["u:0", "a:0", "x:0", "b:0", "c:0"]
    assert average_precision(ranked, RATED_1) == pytest.approx(5 / 6)
    ratings = {1: RATED_1, 2: {"x:0": 1}}
    per_class = per_class_average_precision({1: ranked, 2: []}, ratings)
    assert per_class[1] == pytest.approx(5 / 6)
    # Without the drop the unrated tokens would cost precision: check it is not what we compute.
    assert per_class[1] != pytest.approx((2 / 2 + 2 / 5) / 2)


def test_positive_never_retrieved_counts_in_n_c() -> None:
    # N = 3 positives (a, b, d); list c(-) a(+): Prec(2) = 1/2 -> AP = (1/2) / 3 = 1/6.
    rated = {"a:0": 1, "b:0": 1, "c:0": 0, "d:0": 1}
    assert average_precision(["c:0", "a:0"], rated) == pytest.approx(1 / 6)


def test_rated_negative_ranked_first_costs_precision() -> None:
    # b(-) a(+) c(+): Prec(2) = 1/2, Prec(3) = 2/3 -> (1/2 + 2/3) / 2 = 7/12.
    assert average_precision(["b:0", "a:0", "c:0"], RATED_1) == pytest.approx(7 / 12)


def test_truncation_applies_to_the_submitted_list_before_dropping_unrated() -> None:
    rated = {"a:0": 1, "b:0": 1}
    ranked = ["u:0", "a:0", "v:0", "b:0"]
    # top=3 keeps u a v -> kept a(+): Prec(1) = 1 -> AP = 1 / 2 = 0.5.
    assert average_precision(ranked, rated, top=3) == pytest.approx(0.5)
    # Without the cap: a(+) b(+) -> (1 + 1) / 2 = 1.0.
    assert average_precision(ranked, rated) == pytest.approx(1.0)
    # The cap counts unrated entries: u v w fill top=3, so "a:0" is never seen -> 0.
    assert average_precision(["u:0", "v:0", "w:0", "a:0"], rated, top=3) == 0.0
    assert average_precision(ranked, rated, top=0) == 0.0


def test_duplicate_tokens_count_once_at_their_first_occurrence() -> None:
    rated = {"a:0": 0, "b:0": 1}
    # a a b -> first occurrences a(-) b(+): Prec(2) = 1/2 -> AP = 0.5 (not 1/3 from rank 3).
    assert average_precision(["a:0", "a:0", "b:0"], rated) == pytest.approx(0.5)
    # b b -> one hit, not two: AP = 1.0 (a second count would give 2.0).
    assert average_precision(["b:0", "b:0"], rated) == pytest.approx(1.0)
    # The cap counts raw entries, duplicates included: top=2 keeps a a -> 0.
    assert average_precision(["a:0", "a:0", "b:0"], rated, top=2) == 0.0
    score = score_class(7, ["b:0", "a:0", "b:0", "a:0"], rated)
    assert (score.kept, score.retrieved, score.duplicates) == (2, 1, 2)


def test_empty_and_all_negative_lists_score_zero() -> None:
    rated = {"a:0": 0, "b:0": 0, "c:0": 1}
    assert average_precision([], rated) == 0.0
    assert average_precision(["a:0", "b:0"], rated) == 0.0
    # A class without positives: AP undefined, reported as 0.0 (mAP ignores such a class).
    assert average_precision(["a:0"], {"a:0": 0}) == 0.0


def test_iterables_and_bad_arguments() -> None:
    assert average_precision(iter(["a:0", "c:0"]), RATED_1) == pytest.approx(1.0)
    assert average_precision(np.array(["b:0", "a:0"]), RATED_1) == pytest.approx(0.25)
    with pytest.raises(TypeError, match="not one string"):
        average_precision("a:0", RATED_1)
    with pytest.raises(ValueError, match="top must be >= 0"):
        average_precision(["a:0"], RATED_1, top=-1)


# --------------------------------------------------------------------------------------------
# Hand-computed mean average precision


def test_map_missing_class_scores_zero_and_class_without_positives_is_ignored() -> None:
    ratings = {
        1: RATED_1,
        2: {"x:0": 1, "a:0": 0},
        3: {"q:0": 0},  # no positive: not averaged even though it is submitted
        4: {"m:0": 1},  # missing from the submission: AP 0
    }
    predictions = {
        1: ["u:0", "a:0", "x:0", "b:0", "c:0"],  # 5/6 (see above)
        2: ["a:0", "x:0"],  # a(-) x(+): Prec(2) = 1/2, N = 1 -> 1/2
        3: ["q:0"],
        7: ["a:0"],  # a class nobody rated: ignored
    }
    # mAP = (5/6 + 1/2 + 0) / 3 = 4/9.
    assert mean_average_precision(predictions, ratings) == pytest.approx(4 / 9)
    result = score_submission(predictions, ratings)
    assert list(result.per_class) == [1, 2, 4]
    assert result.missing == [4]
    assert result.ignored == [3, 7]
    assert result.per_class[4].ap == 0.0 and result.per_class[4].listed == 0
    assert result.per_class[1].retrieved == 2 and result.per_class[1].kept == 3
    # Streaming pairs score the same; a repeated class in pairs is an error.
    assert score_submission(iter(predictions.items()), ratings).map == pytest.approx(4 / 9)
    with pytest.raises(ValueError, match="class 1 is listed twice"):
        score_submission([(1, []), (1, [])], ratings)


def test_map_without_any_positive_is_zero() -> None:
    assert mean_average_precision({1: ["a:0"]}, {1: {"a:0": 0}}) == 0.0
    assert mean_average_precision({}, {}) == 0.0


def test_map_accepts_ratings_object_and_numpy_class_ids() -> None:
    ratings = Ratings({1: {"a:0": 1.0, "b:0": 0.0}})
    # b(-) a(+): Prec(2) = 1/2 -> 0.5.
    assert mean_average_precision({np.int64(1): ["b:0", "a:0"]}, ratings) == pytest.approx(0.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Randomized comparison with the naive reference


def _random_case(rng: random.Random) -> tuple[dict[int, list[str]], dict[int, dict[str, int]]]:
    videos = [f"v{i}" for i in range(rng.randint(1, 8))]
    pool = [f"{v}:{5 * s}" for v in videos for s in range(rng.randint(1, 6))]
    classes = list(range(rng.randint(1, 6)))
    ratings: dict[int, dict[str, int]] = {}
    for c in classes:
        if rng.random() < 0.1:
            continue  # a class with no ratings at all
        chosen = rng.sample(pool, rng.randint(0, len(pool)))
        ratings[c] = {t: int(rng.random() < 0.5) for t in chosen}
    predictions: dict[int, list[str]] = {}
    for c in [*classes, 99]:
        if rng.random() < 0.15:
            continue  # class missing from the submission
        n = rng.randint(0, 2 * len(pool))
        # Draw with replacement from the pool plus never-rated tokens: duplicates, unrated
        # segments and segments rated only for another class all occur.
        predictions[c] = [rng.choice([*pool, "zz:0", "zz:5"]) for _ in range(n)]
    return predictions, ratings


def test_matches_naive_reference_on_random_submissions() -> None:
    rng = random.Random(1234)
    compared = 0
    for _ in range(400):
        predictions, ratings = _random_case(rng)
        top = rng.choice([1, 2, 3, 5, 10, 100_000])
        expected = naive_map(predictions, ratings, top)
        assert mean_average_precision(predictions, ratings, top) == pytest.approx(
            expected, abs=1e-12
        )
        assert mean_average_precision(predictions, Ratings(ratings), top) == pytest.approx(
            expected, abs=1e-12
        )
        for c, rated in ratings.items():
            got = average_precision(predictions.get(c, []), rated, top)
            assert got == pytest.approx(naive_ap(predictions.get(c, []), rated, top), abs=1e-12)
            compared += 1
    assert compared > 1000


# --------------------------------------------------------------------------------------------
# Ratings from videos


def _video(vid: str, frames: int, labels: list[int], starts: list[int], scores: list[float]):
    from service.yt8m import Video

    return Video(
        id=vid,
        rgb=np.zeros((frames, 1024), dtype=np.uint8),
        audio=np.zeros((frames, 128), dtype=np.uint8),
        labels=np.array(sorted(set(labels)), dtype=np.int64),
        segment_labels=np.array(labels, dtype=np.int64),
        segment_starts=np.array(starts, dtype=np.int64),
        segment_scores=np.array(scores, dtype=np.float32),
    )


def test_ratings_from_videos_keep_max_of_repeated_pairs(caplog: pytest.LogCaptureFixture) -> None:
    videos = [
        # (class 1, v1:0) rated 1 then 0 -> max 1; class 2 rates the same segment positive.
        _video("v1", 10, [1, 1, 2, 1], [0, 5, 0, 0], [1.0, 0.0, 1.0, 0.0]),
        _video("v2", 10, [1], [5], [1.0]),
        _video("v3", 10, [], [], []),  # unrated: adds nothing
    ]
    ratings = Ratings.from_videos(videos)
    assert dict(ratings[1]) == {"v1:0": 1, "v1:5": 0, "v2:5": 1}
    assert dict(ratings[2]) == {"v1:0": 1}
    assert ratings.duplicates == 1
    assert ratings.num_positives(1) == 2 and ratings.num_positives(3) == 0
    assert ratings.positive_classes() == [1, 2]
    assert ratings.num_ratings == 4 and ratings.num_videos == 3
    assert "rated more than once" in caplog.text
    assert dict(Ratings(videos)[1]) == dict(ratings[1])
    assert positives_by_video(ratings[1]) == {"v1": 1, "v2": 1}


def test_ratings_past_the_last_segment_are_kept_or_dropped() -> None:
    # 10 frames: whole segments start at 0 and 5; a rating at 10 is past the last segment.
    videos = [_video("v1", 10, [1, 1], [0, 10], [0.0, 1.0])]
    kept = Ratings.from_videos(videos)
    assert kept.out_of_range == 1 and kept.num_positives(1) == 1
    # Kept as ground truth: it counts in N_c though no submission can sensibly retrieve it.
    assert mean_average_precision({1: ["v1:0"]}, kept) == 0.0
    dropped = Ratings.from_videos(videos, drop_out_of_range=True)
    assert dict(dropped[1]) == {"v1:0": 0} and dropped.positive_classes() == []


def test_ratings_reject_nan() -> None:
    with pytest.raises(ValueError, match=r"video 'v1'.*NaN"):
        Ratings.from_videos([_video("v1", 10, [1], [0], [float("nan")])])


# --------------------------------------------------------------------------------------------
# Candidate recall


def test_candidate_recall_hand_computed_with_ties() -> None:
    video_ids = ["v0", "v1", "v2", "v3"]
    scores = np.array(
        [
            [0.9, 0.2, 0.0],
            [0.5, 0.8, 0.0],
            [0.5, 0.3, 0.0],  # ties v1 for class 0: v1 comes first (stable, input order)
            [0.1, 0.0, 0.0],
        ],
        dtype=np.float32,
    )
    ratings = {
        0: {"v0:0": 0, "v1:0": 1, "v1:5": 1, "v2:0": 1, "v3:0": 1},  # 4 positives
        1: {"v0:0": 1, "zz:0": 1},  # zz is not among the scored videos
        5: {"v0:5": 1},  # no score column: never retrieved
        6: {"v0:0": 0},  # no positive: not reported
    }
    result = candidate_recall(video_ids, scores, ratings, ks=[1, 2, 3, 4])
    assert result.classes.tolist() == [0, 1, 5]
    assert result.positives.tolist() == [4, 2, 1]
    # Class 0 order v0 v1 v2 v3: K=1 -> 0/4, K=2 -> 2/4, K=3 -> 3/4, K=4 -> 4/4.
    assert result.per_class(1)[0] == 0.0
    assert result.per_class(2)[0] == 0.5
    assert result.per_class(3)[0] == 0.75
    assert result.per_class(4)[0] == 1.0
    # Class 1 order v1 v2 v0 v3: v0 enters at K=3 -> 1/2; zz never.
    assert [result.per_class(k)[1] for k in (1, 2, 3, 4)] == [0.0, 0.0, 0.5, 0.5]
    assert all(result.per_class(k)[5] == 0.0 for k in (1, 2, 3, 4))
    # K=3: mean (3/4 + 1/2 + 0) / 3 = 5/12; pooled (3 + 1 + 0) / (4 + 2 + 1) = 4/7.
    assert result.mean[3] == pytest.approx(5 / 12)
    assert result.micro[3] == pytest.approx(4 / 7)
    assert result.recall.shape == (4, 3)


def test_candidate_recall_matches_naive_loops_with_many_ties() -> None:
    rng = random.Random(7)
    for _ in range(50):
        num_videos, num_classes = rng.randint(1, 12), rng.randint(1, 5)
        video_ids = [f"v{i}" for i in range(num_videos)]
        # Scores from a few levels, so ties are common.
        scores = np.array(
            [[rng.choice([0.0, 0.25, 0.5, 1.0]) for _ in range(num_classes)] for _ in video_ids]
        )
        ratings = {
            c: {f"v{rng.randint(0, num_videos + 2)}:{5 * s}": rng.randint(0, 1) for s in range(6)}
            for c in range(num_classes + 1)  # the last class has no score column
        }
        ks = [1, 2, 3, 5, 20]
        result = candidate_recall(video_ids, scores, ratings, ks)
        for c, rated in ratings.items():
            n_c = sum(rated.values())
            if n_c == 0:
                assert c not in result.classes.tolist()
                continue
            for k in ks:
                if c < num_classes:
                    # Sort by descending score, ties by position in video_ids.
                    order = sorted(range(num_videos), key=lambda i: (-scores[i, c], i))
                    kept = {video_ids[i] for i in order[:k]}
                else:
                    kept = set()
                found = sum(v for t, v in rated.items() if t.split(":")[0] in kept)
                assert result.per_class(k)[c] == pytest.approx(found / n_c)


def test_candidate_recall_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"scores must be \[V=2, C\]"):
        candidate_recall(["a", "b"], np.zeros((3, 2)), {0: {"a:0": 1}}, ks=[1])
    with pytest.raises(ValueError, match="duplicate"):
        candidate_recall(["a", "a"], np.zeros((2, 2)), {0: {"a:0": 1}}, ks=[1])
    with pytest.raises(ValueError, match="ks must be"):
        candidate_recall(["a"], np.zeros((1, 2)), {0: {"a:0": 1}}, ks=[0])
    with pytest.raises(ValueError, match="NaN"):
        candidate_recall(["a"], np.full((1, 2), np.nan), {0: {"a:0": 1}}, ks=[1])


def test_recall_at_k_single_class() -> None:
    scores = {"v0": 0.1, "v1": 0.7, "v2": 0.7, "v3": 0.9}
    positives = {"v2": 2, "v0": 1, "gone": 1}  # 4 positives
    # Order v3 v1 v2 v0 (v1 before v2: tie, mapping order). K=2 -> 0/4, K=3 -> 2/4, K=9 -> 3/4.
    assert recall_at_k(scores, positives, 2) == 0.0
    assert recall_at_k(scores, positives, 3) == 0.5
    assert recall_at_k(scores, positives, 9) == 0.75
    assert recall_at_k(scores, {}, 3) == 0.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        recall_at_k(scores, positives, 0)


# --------------------------------------------------------------------------------------------
# Submission file


def test_submission_round_trip_plain_and_gzip(tmp_path: Path) -> None:
    predictions = {12: ["b:5", "a:0", "a:0"], 3: [], 7: ["odd:id:10", "x:-5"]}
    for name in ("sub.csv", "sub.csv.gz"):
        path = write_submission(tmp_path / name, predictions)
        assert read_submission(path) == predictions
        assert list(read_submission(path)) == [3, 7, 12]  # rows in ascending class id
    text = (tmp_path / "sub.csv").read_text()
    assert text == "Class,Segments\n3,\n7,odd:id:10 x:-5\n12,b:5 a:0 a:0\n"
    with gzip.open(tmp_path / "sub.csv.gz", "rt") as f:
        assert f.read() == text
    write_submission(tmp_path / "top.csv", predictions, top=1)
    assert read_submission(tmp_path / "top.csv")[12] == ["b:5"]
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (["a:0", "b"], "class 1: token 2 'b'"),
        (["a:0", "a:x"], "token 2 'a:x'"),
        (["a:0 b:5"], "token 1 'a:0 b:5'"),
        ([""], "token 1 ''"),
        ([":5"], "token 1 ':5'"),
        (["a:0", 5], "token 2 5"),
    ],
)
def test_write_submission_rejects_bad_tokens(tmp_path: Path, tokens: list, message: str) -> None:
    with pytest.raises(SubmissionError, match=message):
        write_submission(tmp_path / "bad.csv", {1: tokens})
    assert not (tmp_path / "bad.csv").exists()


def test_read_submission_accepts_bom_blank_lines_crlf_and_loose_spacing(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"\xef\xbb\xbfClass,Segments\r\n\r\n5, a:0   b:5 \r\n6,\r\n")
    assert read_submission(path) == {5: ["a:0", "b:5"], 6: []}


def test_read_submission_quoted_fields_and_line_numbers_after_them(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    # Row 1 is quoted and spans lines 2-3; class 2 is on line 4, the bad class on line 5.
    path.write_text('Class,Segments\n"1","a:0\nb:5"\n2,c:0\nx,d:0\n')
    rows = iter_submission(path)
    assert next(rows) == (1, ["a:0", "b:5"])
    assert next(rows) == (2, ["c:0"])
    with pytest.raises(SubmissionError, match="line 5: class 'x'"):
        next(rows)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"line 1: missing header"),
        ("class,segments\n1,a:0\n", r"line 1: expected header 'Class,Segments'"),
        ("Class,Segments\n1,a:0\nx,a:0\n", r"line 3: class 'x' is not an integer"),
        ("Class,Segments\n1.0,a:0\n", r"line 2: class '1.0' is not an integer"),
        ("Class,Segments\n-1,a:0\n", r"line 2: class -1 is negative"),
        ("Class,Segments\n1,a:0 b\n", r"line 2: class 1: token 2 'b'"),
        ("Class,Segments\n1,a:0\n\n2,a:0 b:5 c:1x\n", r"line 4: class 2: token 3 'c:1x'"),
        ("Class,Segments\n1,:5\n", r"line 2: class 1: token 1 ':5'"),
        ("Class,Segments\n1,a:0\n2,b:0\n1,c:0\n", r"line 4: class 1 already listed on line 2"),
        ("Class,Segments\n1,a:0,b:0\n", r"line 2: expected 2 fields"),
        ("Class,Segments\n1\n", r"line 2: expected 2 fields 'Class,Segments', got 1"),
    ],
)
def test_read_submission_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SubmissionError, match=message) as err:
        read_submission(path)
    assert str(path) in str(err.value)


def test_iter_submission_streams_rows_before_a_later_error(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    big = " ".join(f"v{i}:{5 * (i % 60)}" for i in range(60_000))  # > csv's default field limit
    path.write_text(f"Class,Segments\n1,{big}\n2,oops\n")
    rows = iter_submission(path)
    c, tokens = next(rows)
    assert c == 1 and len(tokens) == 60_000 and tokens[1] == "v1:5"
    with pytest.raises(SubmissionError, match="line 3"):
        next(rows)


# --------------------------------------------------------------------------------------------
# `ccrl score`


def test_report_for_many_classes_shows_stats_and_extremes() -> None:
    # 50 classes; class c rates "s:0" positive and "n:0" negative. Even classes list s first
    # (AP 1), odd classes list n first (n(-) s(+): Prec(2) = 1/2 -> AP 0.5); class 49 is missing
    # (AP 0). mAP = (25 * 1 + 24 * 0.5 + 0) / 50 = 37/50 = 0.74.
    ratings = {c: {"s:0": 1, "n:0": 0} for c in range(50)}
    predictions = {c: ["s:0", "n:0"] if c % 2 == 0 else ["n:0", "s:0"] for c in range(49)}
    result = score_submission(predictions, ratings)
    assert result.map == pytest.approx(0.74)
    lines = format_report(result)
    assert lines[-1] == "mAP 0.740000"
    text = "\n".join(lines)
    assert "worst 10 classes:" in text and "best 10 classes:" in text
    assert "min 0.0000" in text and "max 1.0000" in text
    assert "missing classes (AP 0): 49" in text
    worst = lines[lines.index("worst 10 classes:") + 2]
    assert worst.split()[0] == "49" and worst.endswith("0.0000")
    assert len(lines) < 40  # a summary, not 50 rows


def test_ccrl_score_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ccrl.cli import app
    from service.tfrecord import write_videos

    videos = [
        _video("va", 15, [1, 1, 2], [0, 5, 0], [1.0, 0.0, 1.0]),
        _video("vb", 15, [1, 2, 3], [10, 10, 0], [1.0, 0.0, 0.0]),
    ]
    write_videos(videos, tmp_path / "rated", num_shards=2)
    sub = write_submission(
        tmp_path / "sub.csv",
        # Class 1: va:5(-) zz:0(unrated) vb:10(+): Prec(2) = 1/2, N = 2 -> AP = 1/4.
        # Class 2: va:0(+) first -> AP 1. Class 3 has no positive: ignored. mAP = 5/8.
        {1: ["va:5", "zz:0", "vb:10"], 2: ["va:0", "vb:10"], 3: ["vb:0"]},
    )
    runner = CliRunner()
    result = runner.invoke(app, ["score", str(sub), "--data", str(tmp_path / "rated")])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == "mAP 0.625000"
    assert any(line.split()[:2] == ["1", "2"] and line.endswith("0.2500") for line in lines)
    # --top 1 keeps va:5 only for class 1 -> AP 0; class 2 still 1 -> mAP 1/2.
    result = runner.invoke(
        app, ["score", str(sub), "--data", str(tmp_path / "rated"), "--top", "1"]
    )
    assert result.output.strip().splitlines()[-1] == "mAP 0.500000"

    bad = tmp_path / "bad.csv"
    bad.write_text("Class,Segments\n1,va:0\n2,va:0 nocolon\n")
    result = runner.invoke(app, ["score", str(bad), "--data", str(tmp_path / "rated")])
    assert result.exit_code == 2
    assert "line 3" in result.output and "nocolon" in result.output
    assert "mAP" not in result.output

    result = runner.invoke(app, ["score", str(sub), "--data", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "cannot read ratings" in result.output


def test_tokens_with_csv_special_characters_round_trip(tmp_path: Path) -> None:
    predictions = {1: ["a,b:5", 'q"x:10', "plain:0"]}
    path = write_submission(tmp_path / "special.csv", predictions)
    assert path.read_text().splitlines()[1] == '1,"a,b:5 q""x:10 plain:0"'
    assert read_submission(path) == predictions


def test_header_only_submission_and_bad_quoting(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("Class,Segments\n")
    assert read_submission(empty) == {}
    # Every class with positives is missing: mAP 0.
    assert mean_average_precision(read_submission(empty), {1: {"a:0": 1}}) == 0.0
    bad = tmp_path / "quote.csv"
    bad.write_text('Class,Segments\n1,a:0\n2,"b:0\n')  # the quote never closes
    with pytest.raises(SubmissionError, match="line 3: bad CSV quoting"):
        read_submission(bad)
