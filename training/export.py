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
Runtime at frame counts other than the example's, through :mod:`service.candidate` (the graph's
names and the one ``run`` that serving uses). :func:`write_onnx` and :func:`compare_with_torch` are
shared with the baseline graphs (:mod:`training.baselines`).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import torch
from torch import Tensor, nn

from service import candidate
from service.candidate import INPUT_NAME, OUTPUT_NAMES
from service.yt8m import FEATURE_DIM, SEGMENT_FRAMES

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
    meta["embedding"] = str(
        getattr(model, "embedding", "frames" if model.kind == "logistic" else "hidden")
    )  # type: ignore[attr-defined]
    return meta


def write_onnx(
    graph: nn.Module,
    path: Path,
    *,
    outputs: Sequence[str],
    per_segment: Sequence[str],
    metadata: Mapping[str, str],
    doc_string: str = "",
    example_frames: int = EXAMPLE_FRAMES,
) -> Path:
    """Trace ``graph`` (``forward(frames [F, 1152]) -> outputs``, eval mode) into ``path``.

    The frame axis of the input and the segment axis of the ``per_segment`` outputs are dynamic;
    ``metadata`` becomes the graph's ``metadata_props`` in the given order. The graph is checked
    by ``onnx.checker`` and written atomically; returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (torch.randn(example_frames, FEATURE_DIM),),
            buf,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(outputs),
            dynamic_axes={INPUT_NAME: {0: "frames"}, **{n: {0: "segments"} for n in per_segment}},
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    if doc_string:
        proto.doc_string = doc_string
    onnx.checker.check_model(proto)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(path)
    return path


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
    meta = graph_metadata(model)
    meta.update(extra_metadata or {})
    was_training = model.training
    model.eval()
    try:
        return write_onnx(
            _GraphWrapper(model),
            path,
            outputs=OUTPUT_NAMES,
            per_segment=OUTPUT_NAMES[1:],
            metadata=dict(sorted(meta.items())),
            doc_string=(
                "Candidate generator: frames float32 [F, 1152] (dequantized rgb then audio) -> "
                "video_probs [C], segment_probs [F // 5, C], segment_embeddings [F // 5, D]."
            ),
            example_frames=example_frames,
        )
    finally:
        model.train(was_training)


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


def compare_with_torch(
    path: Path,
    onnx_fn: Callable[[npt.NDArray[np.float32]], Sequence[np.ndarray]],
    torch_fn: Callable[[npt.NDArray[np.float32]], Sequence[np.ndarray]],
    names: Sequence[str],
    *,
    frame_counts: Sequence[int] = CHECK_FRAMES,
    atol: float = 1e-4,
    seed: int = 0,
) -> float:
    """Run both functions on random frames [F, 1152] at each F; return the max abs difference.

    Random frames in the quantization range [-2, 2]. Raises ``AssertionError`` naming ``path``,
    the frame count and the output (``names``) on a shape mismatch or a difference above ``atol``.
    """
    rng = np.random.default_rng(seed)
    worst = 0.0
    for f in frame_counts:
        frames = rng.uniform(-2.0, 2.0, size=(f, FEATURE_DIM)).astype(np.float32)
        for name, g, w in zip(names, onnx_fn(frames), torch_fn(frames), strict=True):
            if g.shape != w.shape:
                raise AssertionError(f"{path}: F={f}: {name} shape {g.shape} != torch {w.shape}")
            if g.size:
                diff = float(np.max(np.abs(g.astype(np.float64) - w)))
                if not diff <= atol:
                    raise AssertionError(f"{path}: F={f}: {name} differs from torch by {diff:.3g}")
                worst = max(worst, diff)
    return worst


def check_graph(
    model: nn.Module,
    path: Path,
    *,
    frame_counts: Sequence[int] = CHECK_FRAMES,
    atol: float = 1e-4,
    seed: int = 0,
) -> float:
    """Compare ``candidate.onnx`` (run by :func:`service.candidate.run`, as served) with PyTorch.

    See :func:`compare_with_torch`; returns the max abs difference over the outputs.
    """
    session = candidate.open_session(path)

    def onnx_fn(frames: npt.NDArray[np.float32]) -> tuple[np.ndarray, ...]:
        out = candidate.run(session, frames)
        return out.video_probs, out.segment_probs, out.segment_embeddings

    return compare_with_torch(
        path,
        onnx_fn,
        lambda frames: torch_outputs(model, frames),
        OUTPUT_NAMES,
        frame_counts=frame_counts,
        atol=atol,
        seed=seed,
    )
