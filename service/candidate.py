"""The candidate model at run time: the one place that opens and runs the ONNX graphs of a bundle.

The graph contract (docs/contracts.md, "Candidate model"):

- ``candidate.onnx``: input ``frames`` float32 [F, 1152] (dequantized rgb then audio) -> outputs
  ``video_probs`` float32 [C], ``segment_probs`` float32 [S, C], ``segment_embeddings`` float32
  [S, D], with S = F // 5 (S = 0 for F < 5: zero-row segment outputs);
- ``baseline_{name}.onnx``: input ``frames`` float32 [F, 1152] -> output ``segment_probs`` float32
  [S, C].

The scorer (serving) and training (the CCRL pairs and bank, the candidate report, the export checks,
corpus scoring) all open the graphs with :func:`open_session` and run them with :func:`run` /
:func:`run_baseline`, so training and serving feed and read the graph the same way by construction.
numpy and onnxruntime only (imported when a session is opened); never torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.tuning import session_options
from service.yt8m import FEATURE_DIM

F32 = npt.NDArray[np.float32]

INPUT_NAME = "frames"
OUTPUT_NAMES: tuple[str, str, str] = ("video_probs", "segment_probs", "segment_embeddings")
#: The one output of a baseline graph.
BASELINE_OUTPUT_NAMES: tuple[str] = ("segment_probs",)
PROVIDER_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class CandidateOutputs:
    """The candidate model's outputs for one video.

    Attributes:
        video_probs: float32 [C].
        segment_probs: float32 [S, C].
        segment_embeddings: float32 [S, D].
    """

    video_probs: F32
    segment_probs: F32
    segment_embeddings: F32

    @property
    def num_segments(self) -> int:
        return int(self.segment_probs.shape[0])


def ort_providers(choice: str = "auto") -> list[str]:
    """ONNX Runtime providers: ``auto`` (CUDA when available, then CPU), ``cpu``, ``cuda``."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    if choice == "cpu":
        return ["CPUExecutionProvider"]
    if choice == "cuda" and "CUDAExecutionProvider" not in available:
        raise RuntimeError(
            "ort_providers=cuda but this onnxruntime build has no CUDAExecutionProvider "
            f"(available: {sorted(available)}); install the gpu extra or use auto"
        )
    if "CUDAExecutionProvider" in available and choice in {"auto", "cuda"}:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(
    path: str | Path,
    threads: int = 1,
    providers: str = "cpu",
    *,
    inter_threads: int = 1,
    outputs: Sequence[str] = OUTPUT_NAMES,
    spinning: bool = False,
) -> Any:
    """An ONNX Runtime session on a graph whose input is ``frames`` and outputs include ``outputs``.

    Args:
        path: ``candidate.onnx`` (or a baseline graph with ``outputs=BASELINE_OUTPUT_NAMES``).
        threads: intra-op threads (at least 1).
        providers: ``cpu``, ``auto`` or ``cuda``, see :func:`ort_providers`.
        inter_threads: inter-op threads.
        outputs: the output names the graph must have.
        spinning: let the pool threads busy-wait between operators (see :mod:`service.tuning`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the graph's input or output names differ from the contract (names the file).
    """
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ONNX graph {p} does not exist")
    opts = session_options(max(1, int(threads)), max(1, int(inter_threads)), spinning=spinning)
    session = ort.InferenceSession(str(p), sess_options=opts, providers=ort_providers(providers))
    got_in = [i.name for i in session.get_inputs()]
    got_out = [o.name for o in session.get_outputs()]
    if got_in != [INPUT_NAME] or not set(outputs) <= set(got_out):
        raise ValueError(
            f"{p}: expected input {INPUT_NAME!r} and outputs {list(outputs)}, "
            f"got inputs {got_in} and outputs {got_out}"
        )
    return session


def graph_dims(session: Any) -> tuple[int, int]:
    """(C, D): the graph's ``num_classes`` and ``embedding_dim`` metadata (0 when absent)."""
    meta = session.get_modelmeta().custom_metadata_map
    return int(meta.get("num_classes", "0")), int(meta.get("embedding_dim", "0"))


def _feed(frames: npt.ArrayLike) -> dict[str, F32]:
    x = np.ascontiguousarray(frames, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != FEATURE_DIM:
        raise ValueError(f"frames must be [F, {FEATURE_DIM}], got {x.shape}")
    return {INPUT_NAME: x}


def run(session: Any, frames: npt.ArrayLike) -> CandidateOutputs:
    """One call of ``candidate.onnx`` on float32 [F, 1152] dequantized frames.

    F = 0 (no frame): zero video probabilities [C] and no segments ([0, C], [0, D]), without
    calling the graph. 1 <= F < 5: the graph runs (the video pass sees the frames) and the segment
    outputs have zero rows. Raises ``ValueError`` for frames that are not [F, 1152].
    """
    feed = _feed(frames)
    if feed[INPUT_NAME].shape[0] == 0:
        c, d = graph_dims(session)
        return CandidateOutputs(
            np.zeros(c, np.float32), np.zeros((0, c), np.float32), np.zeros((0, d), np.float32)
        )
    vp, sp, se = (np.asarray(a, dtype=np.float32) for a in session.run(list(OUTPUT_NAMES), feed))
    return CandidateOutputs(vp.reshape(-1), sp, se)


def run_baseline(session: Any, frames: npt.ArrayLike) -> F32:
    """One call of a baseline graph: float32 [F, 1152] -> ``segment_probs`` float32 [S, C].

    F = 0: a [0, C] array without calling the graph (C from the graph's metadata).
    """
    feed = _feed(frames)
    if feed[INPUT_NAME].shape[0] == 0:
        return np.zeros((0, graph_dims(session)[0]), np.float32)
    out = session.run(list(BASELINE_OUTPUT_NAMES), feed)[0]
    return np.asarray(out, dtype=np.float32)
