"""The candidate ONNX graph: contract (names, shapes, dynamic frame axis, metadata) and parity.

Models here are freshly initialized (random weights, random input statistics) so the tests run in
seconds; the trained-model path is covered in test_candidates.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from service.yt8m import FEATURE_DIM
from training.candidates import (
    EnsembleModel,
    LogisticModel,
    LstmModel,
    ModelConfig,
    build_model,
    score_videos_onnx,
)
from training.export import (
    CHECK_FRAMES,
    EXAMPLE_FRAMES,
    INPUT_NAME,
    OUTPUT_NAMES,
    check_graph,
    export_onnx,
    read_metadata,
    torch_outputs,
)

NUM_CLASSES = 7
HIDDEN = 12


def _cfg(model: str, **kw: object) -> ModelConfig:
    return ModelConfig(model=model, preset="small", num_classes=NUM_CLASSES, hidden=HIDDEN, **kw)  # type: ignore[arg-type]


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial input statistics, so the graph's standardization is exercised."""
    rng = np.random.default_rng(seed)
    for norm in [m for m in model.modules() if m.__class__.__name__ == "Standardize"]:
        norm.fit(rng.normal(0, 0.3, FEATURE_DIM), rng.uniform(0.5, 1.5, FEATURE_DIM))  # type: ignore[operator]
    return model.eval()


def _linear_lstm() -> LstmModel:
    """The ``small`` preset's shape: a logistic path plus a recurrent branch (made non-zero here,
    since a fresh one starts at zero), so the graph carries both."""
    model = _randomize(
        LstmModel(_cfg("lstm", proj=16, proj_norm=True, pool="meanmax", linear=True)), 3
    )
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.3)
        model.linear_scale.uniform_(0.5, 2.0)
    return model  # type: ignore[return-value]


def _models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    logistic = _randomize(LogisticModel(_cfg("logistic")), 1)
    lstm = _randomize(LstmModel(_cfg("lstm", bi_layers=2)), 2)
    return {
        "logistic": logistic,
        "lstm": lstm,
        "lstm_linear": _linear_lstm(),
        "ensemble": EnsembleModel(logistic, lstm).eval(),  # type: ignore[arg-type]
    }


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.nn.Module, Path]]:
    out = tmp_path_factory.mktemp("graphs")
    return {
        name: (model, export_onnx(model, out / name / "candidate.onnx"))
        for name, model in _models().items()
    }


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["logistic", "lstm", "lstm_linear", "ensemble"])
def test_parity_with_torch_at_many_frame_counts(
    graphs: dict[str, tuple[torch.nn.Module, Path]], name: str
) -> None:
    model, path = graphs[name]
    counts = (*CHECK_FRAMES, 299, 2 * EXAMPLE_FRAMES + 1)
    assert EXAMPLE_FRAMES not in counts  # the checked lengths differ from the traced one
    worst = check_graph(model, path, frame_counts=counts, atol=1e-4, seed=3)
    assert worst <= 1e-4


@pytest.mark.parametrize("name", ["logistic", "lstm", "lstm_linear", "ensemble"])
def test_graph_contract(graphs: dict[str, tuple[torch.nn.Module, Path]], name: str) -> None:
    _, path = graphs[name]
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    (inp,) = proto.graph.input
    assert inp.name == INPUT_NAME
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = inp.type.tensor_type.shape.dim
    assert len(dims) == 2 and dims[0].dim_param and not dims[0].dim_value
    assert dims[1].dim_value == FEATURE_DIM
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)
    for o in proto.graph.output:
        assert o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = read_metadata(path)
    emb = FEATURE_DIM if name == "logistic" else HIDDEN
    assert meta["input_format"] == "float32_dequantized"
    assert meta["num_classes"] == str(NUM_CLASSES)
    assert meta["embedding_dim"] == str(emb)
    assert meta["model"] == name.removesuffix("_linear")
    assert meta["preset"] == "small"
    sess = _session(path)
    for f in (3, 5, 12, 300):
        frames = np.zeros((f, FEATURE_DIM), np.float32)
        video, seg, embs = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: frames})
        assert video.shape == (NUM_CLASSES,)
        assert seg.shape == (f // 5, NUM_CLASSES)
        assert embs.shape == (f // 5, emb)
        assert video.dtype == seg.dtype == embs.dtype == np.float32
        assert np.all((video > 0) & (video < 1))


def test_short_and_ragged_videos(graphs: dict[str, tuple[torch.nn.Module, Path]]) -> None:
    """F < 5: zero-row segment outputs; a trailing partial segment only feeds the video pass."""
    _, path = graphs["lstm"]
    sess = _session(path)
    rng = np.random.default_rng(5)
    frames = rng.uniform(-2, 2, size=(12, FEATURE_DIM)).astype(np.float32)
    v12, s12, e12 = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: frames})
    v10, s10, e10 = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: frames[:10]})
    np.testing.assert_allclose(s12, s10, atol=1e-6)
    np.testing.assert_allclose(e12, e10, atol=1e-6)
    assert np.max(np.abs(v12 - v10)) > 1e-6  # frames 10 and 11 do reach the video pass
    # A segment is the model applied to its 5 frames alone: the video pass over those 5 frames.
    v5, _, _ = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: frames[5:10]})
    np.testing.assert_allclose(s12[1], v5, atol=1e-5)
    v1, s1, e1 = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: frames[:1]})
    assert v1.shape == (NUM_CLASSES,) and s1.shape == (0, NUM_CLASSES) and e1.shape == (0, HIDDEN)


def test_ensemble_averages_members(graphs: dict[str, tuple[torch.nn.Module, Path]]) -> None:
    frames = np.random.default_rng(6).uniform(-2, 2, (23, FEATURE_DIM)).astype(np.float32)
    outs = {n: _session(p).run(None, {INPUT_NAME: frames}) for n, (_, p) in graphs.items()}
    for i in (0, 1):
        np.testing.assert_allclose(
            outs["ensemble"][i], 0.5 * (outs["logistic"][i] + outs["lstm"][i]), atol=1e-6
        )
    np.testing.assert_allclose(outs["ensemble"][2], outs["lstm"][2], atol=1e-6)


def test_logistic_embedding_is_segment_mean(
    graphs: dict[str, tuple[torch.nn.Module, Path]],
) -> None:
    frames = np.random.default_rng(7).uniform(-2, 2, (17, FEATURE_DIM)).astype(np.float32)
    _, _, emb = _session(graphs["logistic"][1]).run(None, {INPUT_NAME: frames})
    np.testing.assert_allclose(emb, frames[:15].reshape(3, 5, FEATURE_DIM).mean(1), atol=1e-5)


@pytest.mark.parametrize("kind", ["logistic", "lstm", "lstm_linear"])
def test_padded_training_forward_matches_graph(kind: str) -> None:
    """The padded, packed batch path used in training equals the graph's video pass per video."""
    torch.manual_seed(1)
    model = _linear_lstm() if kind == "lstm_linear" else _randomize(build_model(_cfg(kind)), 4)
    lengths = [9, 30, 4]
    rng = np.random.default_rng(8)
    videos = [rng.uniform(-2, 2, (n, FEATURE_DIM)).astype(np.float32) for n in lengths]
    batch = torch.zeros(len(videos), max(lengths), FEATURE_DIM)
    for i, v in enumerate(videos):
        batch[i, : len(v)] = torch.from_numpy(v)
    batch[0, 9:] = 5.0  # garbage in the padding must not matter
    with torch.no_grad():
        probs = torch.sigmoid(model(batch, torch.tensor(lengths))).numpy()
    for i, v in enumerate(videos):
        np.testing.assert_allclose(probs[i], torch_outputs(model, v)[0], atol=1e-5)


def test_warm_started_linear_lstm_is_the_logistic_model() -> None:
    """With the logistic generator's weights in its logistic path and the recurrent branch at its
    start (zero), the LSTM's video and segment outputs are the logistic model's; its embeddings
    are still the LSTM's hidden states. Training starts from this model (epoch 0)."""
    from training.candidates.loop import _PaddedFeed

    torch.manual_seed(2)
    logistic = _randomize(LogisticModel(_cfg("logistic")), 5)
    with torch.no_grad():
        torch.nn.init.normal_(logistic.head.weight, std=0.2)
    lstm = _randomize(LstmModel(_cfg("lstm", proj=16, pool="mean", linear=True)), 6)
    feed = object.__new__(_PaddedFeed)  # only warm_start is used: no cache needed
    feed.model = lstm  # type: ignore[assignment]
    feed.warm_start(logistic)
    frames = torch.from_numpy(
        np.random.default_rng(10).uniform(-2, 2, (23, FEATURE_DIM)).astype(np.float32)
    )
    with torch.no_grad():
        lv, ls, _ = logistic.graph_outputs(frames)
        rv, rs, emb = lstm.graph_outputs(frames)
        lengths = torch.tensor([23])
        np.testing.assert_allclose(
            lstm(frames[None], lengths).numpy(), logistic(frames[None], lengths).numpy(), atol=1e-5
        )
    np.testing.assert_allclose(rv.numpy(), lv.numpy(), atol=1e-6)
    np.testing.assert_allclose(rs.numpy(), ls.numpy(), atol=1e-6)
    assert emb.shape == (4, HIDDEN) and float(emb.abs().max()) > 0
    assert float((lv - 0.5).abs().max()) > 1e-3  # the logistic model is not trivial


def test_score_videos_onnx(graphs: dict[str, tuple[torch.nn.Module, Path]]) -> None:
    from service.yt8m import Video

    rng = np.random.default_rng(9)
    videos = [
        Video(
            id=f"v{n}",
            rgb=rng.integers(0, 256, (n, 1024), dtype=np.uint8),
            audio=rng.integers(0, 256, (n, 128), dtype=np.uint8),
        )
        for n in (0, 3, 11, 40)
    ]
    model, path = graphs["lstm"]
    ids, probs, segs, embs = score_videos_onnx(path, videos, threads=1)
    assert ids == ["v0", "v3", "v11", "v40"]
    assert probs.shape == (4, NUM_CLASSES) and probs.dtype == np.float32
    assert [s.shape[0] for s in segs] == [0, 0, 2, 8]
    assert [e.shape for e in embs] == [(0, HIDDEN), (0, HIDDEN), (2, HIDDEN), (8, HIDDEN)]
    assert np.all(probs[0] == 0)  # no frames, no evidence
    want = torch_outputs(model, videos[3].features())
    np.testing.assert_allclose(probs[3], want[0], atol=1e-4)
    np.testing.assert_allclose(embs[3], want[2], atol=1e-4)


def test_export_rejects_non_candidate(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="graph_outputs"):
        export_onnx(torch.nn.Linear(3, 4), tmp_path / "x.onnx")
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        score_videos_onnx(tmp_path / "missing.onnx", [])
