"""Export a candidate generator to one ONNX graph, ``candidate.onnx`` (docs/contracts.md).

The graph:

- input ``frames``: float32 [F, 1152], dequantized rgb then audio, F dynamic (1..300);
- outputs ``video_probs`` float32 [C], ``segment_probs`` float32 [S, C] and
  ``segment_embeddings`` float32 [S, D] with S = F // 5 (S = 0 for F < 5: zero-row outputs);
- ``metadata_props``: ``input_format=float32_dequantized``, ``num_classes``, ``embedding_dim``,
  ``model``, ``preset``, ``hidden``, ``bi_layers``, ``opset``, ``exporter``.

The TorchScript-based exporter (``dynamo=False``) is used on purpose: it maps ``nn.LSTM`` to the
ONNX ``LSTM`` operator with a symbolic sequence length, where the dynamo exporter may bake the
example's length into bidirectional LSTM graphs. :func:`check_graph` verifies the result with ONNX
Runtime at frame counts other than the example's.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import torch
from torch import Tensor, nn

from service.yt8m import FEATURE_DIM, SEGMENT_FRAMES

INPUT_NAME = "frames"
OUTPUT_NAMES: tuple[str, str, str] = ("video_probs", "segment_probs", "segment_embeddings")
INPUT_FORMAT = "float32_dequantized"
OPSET = 17
#: The example length used for tracing: deliberately not one of the lengths the tests check.
EXAMPLE_FRAMES = 37
#: Frame counts checked by :func:`check_graph` (5, non-multiples of 5, the maximum 300, and F < 5).
CHECK_FRAMES: tuple[int, ...] = (1, 4, 5, 7, 12, 60, 123, 300)


class _GraphWrapper(nn.Module):
    """Adapts a candidate model's ``graph_outputs`` to a module whose ``forward`` is the graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out: tuple[Tensor, Tensor, Tensor] = self.model.graph_outputs(frames)  # type: ignore[operator]
        return out


def graph_metadata(model: nn.Module) -> dict[str, str]:
    """The ``metadata_props`` of ``model``'s graph (all values are strings)."""
    cfg: Any = model.cfg
    meta = {
        "input_format": INPUT_FORMAT,
        "num_classes": str(cfg.num_classes),
        "embedding_dim": str(model.embedding_dim),  # type: ignore[attr-defined]
        "model": str(model.kind),  # type: ignore[attr-defined]
        "preset": str(cfg.preset),
        "opset": str(OPSET),
        "exporter": "torchscript",
        "segment_frames": str(SEGMENT_FRAMES),
    }
    if model.kind in ("lstm", "ensemble"):  # type: ignore[attr-defined]
        meta["hidden"] = str(cfg.hidden)
        meta["bi_layers"] = str(cfg.bi_layers)
    if model.kind == "ensemble":  # type: ignore[attr-defined]
        meta["ensemble"] = "mean of logistic and lstm probabilities; lstm embeddings"
    return meta


def export_onnx(
    model: nn.Module,
    path: Path,
    *,
    extra_metadata: dict[str, str] | None = None,
    example_frames: int = EXAMPLE_FRAMES,
) -> Path:
    """Write ``model`` (a candidate module in eval mode) as ``path``; return ``path``.

    Raises ``ValueError`` if ``model`` has no ``graph_outputs``.
    """
    if not hasattr(model, "graph_outputs"):
        raise ValueError(f"{type(model).__name__} has no graph_outputs(frames): not a candidate")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    example = torch.randn(example_frames, FEATURE_DIM)
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _GraphWrapper(model),
                (example,),
                buf,  # type: ignore[arg-type]
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    INPUT_NAME: {0: "frames"},
                    "segment_probs": {0: "segments"},
                    "segment_embeddings": {0: "segments"},
                },
                do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buf.getvalue())
    meta = graph_metadata(model)
    meta.update(extra_metadata or {})
    del proto.metadata_props[:]
    for key, value in sorted(meta.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    proto.doc_string = (
        "Candidate generator: frames float32 [F, 1152] (dequantized rgb then audio) -> "
        "video_probs [C], segment_probs [F // 5, C], segment_embeddings [F // 5, D]."
    )
    onnx.checker.check_model(proto)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(path)
    return path


def read_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def torch_outputs(model: nn.Module, frames: npt.NDArray[np.float32]) -> list[np.ndarray]:
    """``model.graph_outputs`` on frames [F, 1152] in eval mode, as numpy arrays."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model.graph_outputs(torch.from_numpy(np.ascontiguousarray(frames)))  # type: ignore[operator]
    finally:
        model.train(was_training)
    return [t.numpy() for t in out]


def check_graph(
    model: nn.Module,
    path: Path,
    *,
    frame_counts: Sequence[int] = CHECK_FRAMES,
    atol: float = 1e-4,
    seed: int = 0,
) -> float:
    """Compare ONNX Runtime with PyTorch at each frame count; return the max abs difference.

    Random frames in the quantization range [-2, 2]. Raises ``AssertionError`` naming the frame
    count and output on a shape mismatch or a difference above ``atol``.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for f in frame_counts:
        frames = rng.uniform(-2.0, 2.0, size=(f, FEATURE_DIM)).astype(np.float32)
        got = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: frames})
        want = torch_outputs(model, frames)
        for name, g, w in zip(OUTPUT_NAMES, got, want, strict=True):
            if g.shape != w.shape:
                raise AssertionError(f"{path}: F={f}: {name} shape {g.shape} != torch {w.shape}")
            if g.size:
                diff = float(np.max(np.abs(g.astype(np.float64) - w)))
                if not diff <= atol:
                    raise AssertionError(f"{path}: F={f}: {name} differs from torch by {diff:.3g}")
                worst = max(worst, diff)
    return worst
