"""Tests of the vocabulary readers on real-layout files, hand-written edge cases and the corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.vocab import VocabularyError, read_segment_label_ids, read_vocabulary

REAL_HEADER = (
    "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,"
    "WikiDescription"
)


def _write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding=encoding)
    return p


def test_real_layout_with_quotes_commas_newlines_and_gaps(tmp_path: Path) -> None:
    text = (
        REAL_HEADER
        + "\n"
        + '0,378135,/m/0bzvm2,Game,https://en.wikipedia.org/wiki/Game,Games,,,"A game, '
        + 'i.e. ""play"",\nspanning two lines."\n'
        + '1,286532,/m/03bt1gh,"Video game, console",https://x,Games,"Arts & Entertainment",,\n'
        + "\n"
        + "7,12,,,,,,,\n"
        + "3,5,/m/0abc,Car,,Autos & Vehicles,,,Short\n"
    )
    vocab = read_vocabulary(_write(tmp_path, "vocabulary.csv", text, encoding="utf-8-sig"))
    assert vocab.ids.tolist() == [0, 1, 3, 7]
    assert vocab.name(0) == "Game"
    assert vocab.name(1) == "Video game, console"
    assert vocab.name(7) == "class 7"  # empty Name falls back
    assert vocab.name(999) == "class 999"  # unknown id falls back
    assert vocab.verticals == {0: "Games", 1: "Games", 3: "Autos & Vehicles"}
    assert vocab.vertical(7) is None
    assert vocab.kg_ids[1] == "/m/03bt1gh" and 7 not in vocab.kg_ids
    assert vocab.train_video_counts == {0: 378135, 1: 286532, 7: 12, 3: 5}
    assert vocab.num_classes == 8 and len(vocab) == 4
    assert 3 in vocab and 2 not in vocab and "3" not in vocab


def test_extra_and_reordered_columns(tmp_path: Path) -> None:
    text = "Name,Extra,Index\nAlpha,x,2\nBeta,y,0\n"
    vocab = read_vocabulary(_write(tmp_path, "v.csv", text))
    assert vocab.names == {2: "Alpha", 0: "Beta"}
    assert vocab.verticals == {} and vocab.train_video_counts == {}


@pytest.mark.parametrize("missing", ["Index", "Name"])
def test_missing_required_column_names_file_and_column(tmp_path: Path, missing: str) -> None:
    cols = [c for c in ["Index", "Name", "Vertical1"] if c != missing]
    p = _write(tmp_path, "bad.csv", ",".join(cols) + "\n" + ",".join(["1"] * len(cols)) + "\n")
    with pytest.raises(VocabularyError, match=rf"bad\.csv:1: missing column\(s\) {missing}"):
        read_vocabulary(p)


def test_bad_values_name_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "v.csv", "Index,Name\n0,a\nzero,b\n")
    with pytest.raises(VocabularyError, match=r"v\.csv:3: column 'Index' must be an integer"):
        read_vocabulary(p)
    p = _write(tmp_path, "d.csv", "Index,Name\n0,a\n1,b\n0,c\n")
    with pytest.raises(VocabularyError, match=r"d\.csv:4: duplicate Index 0"):
        read_vocabulary(p)
    p = _write(tmp_path, "c.csv", "Index,Name,TrainVideoCount\n0,a,many\n")
    with pytest.raises(VocabularyError, match=r"c\.csv:2: column 'TrainVideoCount'"):
        read_vocabulary(p)
    with pytest.raises(VocabularyError, match="empty file"):
        read_vocabulary(_write(tmp_path, "e.csv", ""))
    with pytest.raises(FileNotFoundError):
        read_vocabulary(tmp_path / "absent.csv")


def test_segment_label_ids(tmp_path: Path) -> None:
    ids = read_segment_label_ids(_write(tmp_path, "s.csv", "Index\n3\n\n10\n7\n"))
    assert ids.dtype == np.int64 and ids.tolist() == [3, 10, 7]
    ids = read_segment_label_ids(_write(tmp_path, "s2.csv", "Name,Index\nx,4\ny,1\n"))
    assert ids.tolist() == [4, 1]
    assert read_segment_label_ids(_write(tmp_path, "s3.csv", "Index\n")).shape == (0,)
    with pytest.raises(VocabularyError, match=r"s4\.csv:1: missing column Index"):
        read_segment_label_ids(_write(tmp_path, "s4.csv", "Id\n1\n"))
    with pytest.raises(VocabularyError, match=r"s5\.csv:3: column 'Index' must be an integer"):
        read_segment_label_ids(_write(tmp_path, "s5.csv", "Index\n1\nx\n"))
    with pytest.raises(VocabularyError, match=r"s6\.csv:3: duplicate class id 1"):
        read_segment_label_ids(_write(tmp_path, "s6.csv", "Index\n1\n1\n"))


def test_reads_the_synthetic_corpus(tiny_corpus: Path) -> None:
    vocab = read_vocabulary(tiny_corpus / "vocabulary.csv")
    assert vocab.ids.tolist() == list(range(20))
    assert all(vocab.names[c] for c in range(20))
    assert set(vocab.verticals) == set(range(20))
    assert len(set(vocab.kg_ids.values())) == 20
    assert sum(vocab.train_video_counts.values()) > 72  # 72 train videos, 1..5 labels each
    rated = read_segment_label_ids(tiny_corpus / "segment_label_ids.csv")
    assert len(rated) == 12 and set(rated.tolist()) <= set(vocab.ids.tolist())
