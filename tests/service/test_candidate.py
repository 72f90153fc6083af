"""The candidate runtime (service/candidate.py) on the tiny bundle's real graphs: names, empty and
short videos, baseline graphs, errors that name the file. That the scorer and training get the same
outputs from it is checked in tests/training/test_pipeline.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service import candidate
from service.bundle import load_bundle
from service.yt8m import FEATURE_DIM


def _frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2, 2, (n, FEATURE_DIM)).astype(np.float32)


def test_run_shapes_for_empty_short_and_long_videos(service_bundle: Path) -> None:
    bundle = load_bundle(service_bundle)
    session = candidate.open_session(bundle.candidate_path)
    c, d = candidate.graph_dims(session)
    assert c == bundle.num_classes and d == bundle.bank.dim
    empty = candidate.run(session, np.zeros((0, FEATURE_DIM), np.float32))
    assert empty.video_probs.shape == (c,) and not empty.video_probs.any()
    assert empty.segment_probs.shape == (0, c) and empty.segment_embeddings.shape == (0, d)
    short = candidate.run(session, _frames(3))  # the video pass runs, no whole segment
    assert short.video_probs.shape == (c,) and short.num_segments == 0
    assert short.segment_embeddings.shape == (0, d)
    # the graph ran (an empty video gets all zeros without it); random frames are far from the
    # training videos, and ONNX Runtime's sigmoid rounds a confident generator's logits below
    # about -18 to exactly 0 (the small LSTM's calibrated logistic path is confident)
    assert np.all((short.video_probs >= 0) & (short.video_probs < 1))
    assert short.video_probs.max() > 0 and len(np.unique(short.video_probs)) > 1
    out = candidate.run(session, _frames(23))
    assert out.segment_probs.shape == (4, c) and out.segment_embeddings.shape == (4, d)
    for a in (out.video_probs, out.segment_probs, out.segment_embeddings):
        assert a.dtype == np.float32
    with pytest.raises(ValueError, match=r"frames must be \[F, 1152\]"):
        candidate.run(session, np.zeros((5, 1024), np.float32))


def test_baseline_graphs(service_bundle: Path) -> None:
    bundle = load_bundle(service_bundle)
    path = bundle.baseline_paths["lstm"]
    with pytest.raises(ValueError, match=r"baseline_lstm\.onnx: expected input 'frames'"):
        candidate.open_session(path)  # a baseline graph has no video_probs
    session = candidate.open_session(path, outputs=candidate.BASELINE_OUTPUT_NAMES)
    probs = candidate.run_baseline(session, _frames(12))
    assert probs.shape == (2, bundle.num_classes) and probs.dtype == np.float32
    empty = candidate.run_baseline(session, np.zeros((0, FEATURE_DIM), np.float32))
    assert empty.shape == (0, bundle.num_classes)


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.onnx"):
        candidate.open_session(tmp_path / "nothing.onnx")
    assert candidate.ort_providers("cpu") == ["CPUExecutionProvider"]
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RuntimeError, match="no CUDAExecutionProvider"):
            candidate.ort_providers("cuda")
