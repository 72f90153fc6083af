"""``ccrl train-candidates``: train the generator(s), export ONNX, report Recall@K, in stages.

:func:`train_candidates` reads top to bottom: check the arguments, load the split caches, count
the classes (``vocabulary.csv``), train each member (:func:`training.candidates.loop.train_model`),
export and check the graphs, score the rated split with the exported graphs (the served call,
:mod:`service.candidate`), build the recall report, choose the generator and install its graph as
``OUT/candidate.onnx``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm.auto import tqdm

from service import candidate
from service.vocab import Vocabulary, read_vocabulary
from service.yt8m import Video
from training.candidates.config import MODEL_KINDS, PRESETS, model_config
from training.candidates.loop import TrainOutcome, train_model
from training.candidates.models import EnsembleModel, LogisticModel

#: The frame counts at which each exported graph is compared with PyTorch.
EXPORT_CHECK_FRAMES = (4, 5, 12, 123)


@dataclass
class CandidateResult:
    """What :func:`train_candidates` produced.

    Attributes:
        onnx_path: the chosen generator's graph, ``OUT/candidate.onnx``.
        onnx_paths: generator name -> its graph (for ``ensemble``: logistic, lstm, ensemble).
        model: the chosen generator's name.
        k: the chosen K (videos kept per class).
        report: the report dict (see :mod:`training.candidate_report`).
        report_paths: ``json``, ``markdown``, ``plot`` -> file.
        checkpoints: trained model name -> its checkpoint.
        num_classes: C, the vocabulary size.
    """

    onnx_path: Path
    onnx_paths: dict[str, Path]
    model: str
    k: int
    report: dict[str, Any]
    report_paths: dict[str, Path]
    checkpoints: dict[str, Path] = field(default_factory=dict)
    num_classes: int = 0


def score_videos_onnx(
    onnx_path: Path,
    videos: Iterable[Video],
    *,
    threads: int = 1,
    progress: bool = False,
    total: int | None = None,
) -> tuple[list[str], npt.NDArray[np.float32], list[np.ndarray], list[np.ndarray]]:
    """Run ``candidate.onnx`` on every video (one :func:`service.candidate.run` per video).

    Returns (video ids [V], video_probs float32 [V, C], per-video segment_probs float32 [S_v, C],
    per-video segment_embeddings float32 [S_v, D]). A video with no frame gets zero probabilities
    and no segments. Raises ``FileNotFoundError`` when there is no graph at ``onnx_path``.
    """
    session = candidate.open_session(onnx_path, threads=threads)
    ids: list[str] = []
    outs: list[candidate.CandidateOutputs] = []
    for v in tqdm(videos, total=total, desc="candidate graph", disable=not progress, leave=False):
        ids.append(v.id)
        outs.append(candidate.run(session, v.features()))
    num_classes = candidate.graph_dims(session)[0]
    matrix = np.zeros((0, num_classes), np.float32)
    if outs:
        matrix = np.stack([o.video_probs for o in outs]).astype(np.float32)
    return ids, matrix, [o.segment_probs for o in outs], [o.segment_embeddings for o in outs]


def read_data_vocabulary(data_dir: Path) -> Vocabulary | None:
    """``DATA/vocabulary.csv`` (:func:`service.vocab.read_vocabulary`), or None when absent."""
    path = Path(data_dir) / "vocabulary.csv"
    return read_vocabulary(path) if path.is_file() else None


def _size(vocab: Vocabulary | None) -> int | None:
    return vocab.num_classes if vocab is not None and vocab.num_classes > 0 else None


def vocabulary_size(data_dir: Path) -> int | None:
    """max Index + 1 of ``DATA/vocabulary.csv``, or None when the file is absent or empty."""
    return _size(read_data_vocabulary(data_dir))


def rated_split(data_dir: Path) -> Path:
    """``DATA/test`` when present, else ``DATA/validate``; raises naming DATA if neither exists."""
    for name in ("test", "validate"):
        p = Path(data_dir) / name
        if p.is_dir():
            return p
    raise FileNotFoundError(f"{data_dir} has no rated split (test/ or validate/)")


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------


def _check_arguments(model: str, preset: str, data_dir: Path) -> Path:
    """Validate the model, preset and corpus layout; return the rated split's folder."""
    if model not in MODEL_KINDS:
        raise ValueError(f"unknown model {model!r} (expected one of {MODEL_KINDS})")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (expected one of {sorted(PRESETS)})")
    if not (data_dir / "train").is_dir():
        raise FileNotFoundError(f"{data_dir} has no train/ folder")
    return rated_split(data_dir)


def _count_classes(vocab: Vocabulary | None, data_dir: Path, caches: Sequence[Any]) -> int:
    """C: the vocabulary size, or the largest label seen + 1 without a vocabulary."""
    seen_max = max(c.max_label() for c in caches)
    num_classes = _size(vocab) or seen_max + 1
    if seen_max >= num_classes:
        raise ValueError(
            f"{data_dir / 'vocabulary.csv'}: {num_classes} classes "
            f"but the data uses class {seen_max}"
        )
    return num_classes


def _train_members(
    members: Sequence[str],
    train_cache: Any,
    out_dir: Path,
    settings: Mapping[str, Any],
    overrides: Mapping[str, Mapping[str, Any]] | None,
    *,
    resume: bool,
    progress: bool,
) -> dict[str, TrainOutcome]:
    """Train each member; ``settings``: ``preset``, ``num_classes``, ``epochs``, ``seed``."""
    trained: dict[str, TrainOutcome] = {}
    for name in members:
        cfg = model_config(name, **settings, overrides=(overrides or {}).get(name))
        ckpt_dir = out_dir / "checkpoints" / name
        # the LSTM's logistic path starts from the logistic member when there is one (same split)
        init = trained["logistic"].model if "logistic" in trained and cfg.warm_start else None
        assert init is None or isinstance(init, LogisticModel)
        trained[name] = train_model(
            cfg, train_cache, ckpt_dir, resume=resume, progress=progress, init=init
        )
    return trained


def _export_graphs(
    trained: Mapping[str, TrainOutcome], model: str, out_dir: Path, seed: int
) -> dict[str, Path]:
    """Export (and check against PyTorch) each trained model, plus the ensemble of both."""
    from training.export import check_graph, export_onnx

    modules: dict[str, nn.Module] = {n: o.model for n, o in trained.items()}
    if model == "ensemble":
        modules["ensemble"] = EnsembleModel(trained["logistic"].model, trained["lstm"].model)  # type: ignore[arg-type]
    onnx_paths: dict[str, Path] = {}
    for name, module in modules.items():
        path = (out_dir / name if model == "ensemble" else out_dir) / "candidate.onnx"
        export_onnx(module, path, extra_metadata={"seed": str(seed)})
        check_graph(module, path, frame_counts=EXPORT_CHECK_FRAMES, atol=1e-4)
        onnx_paths[name] = path
    return onnx_paths


def _generator_facts(
    onnx_paths: Mapping[str, Path], trained: Mapping[str, TrainOutcome], out_dir: Path
) -> dict[str, dict[str, Any]]:
    """Per generator: training time, epochs, losses, speed, graph (an ensemble sums its members)."""
    extra: dict[str, dict[str, Any]] = {}
    for name in onnx_paths:
        parts = list(trained) if name == "ensemble" else [name]
        extra[name] = {
            "train_seconds": sum(trained[p].train_seconds for p in parts),
            "epochs": "+".join(str(len(trained[p].history)) for p in parts),
            "best_epoch": "+".join(str(trained[p].best_epoch) for p in parts),
            "val_loss": min(trained[p].best_val_loss for p in parts),
            "train_videos_per_second": min(trained[p].videos_per_second for p in parts),
            "onnx": str(onnx_paths[name].relative_to(out_dir)),
        }
    return extra


def _recall_report(
    onnx_paths: Mapping[str, Path],
    rated_cache: Any,
    split: str,
    class_names: Mapping[int, str],
    extra: dict[str, dict[str, Any]],
    *,
    threads: int,
    progress: bool,
) -> dict[str, Any]:
    """Score the rated split with every exported graph and build the Recall@K report."""
    from training.candidate_report import build_report, ratings_from_csr

    video_ids = [str(x) for x in rated_cache.ids]
    ratings = ratings_from_csr(
        video_ids,
        rated_cache.seg_offsets,
        rated_cache.seg_labels,
        rated_cache.seg_starts,
        rated_cache.seg_scores,
    )
    generators: dict[str, np.ndarray] = {}
    for name, path in onnx_paths.items():
        videos = rated_cache.videos()
        _, probs, _, _ = score_videos_onnx(
            path, videos, threads=threads, progress=progress, total=len(rated_cache)
        )
        generators[name] = probs
    num_segments = rated_cache.lengths // 5
    return build_report(
        generators,
        video_ids,
        num_segments,
        ratings,
        split=split,
        class_names=dict(class_names),
        extra=extra,
    )


def _choose(report: dict[str, Any], names: Sequence[str]) -> str:
    """The generator with the best average recall at K (ties: later in ``names`` wins)."""
    gens = report["generators"]
    best = names[0]
    for n in names[1:]:
        if gens[n]["average_recall_at_k"] >= gens[best]["average_recall_at_k"] - 1e-12:
            best = n
    return best


def _install(chosen: Path, final: Path) -> None:
    """Copy the chosen graph to ``final`` atomically (nothing to do when it is already there)."""
    if chosen != final:
        tmp = final.with_suffix(".onnx.tmp")
        tmp.write_bytes(chosen.read_bytes())
        tmp.replace(final)


# --------------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------------


def train_candidates(
    data_dir: Path,
    out_dir: Path,
    *,
    model: str = "lstm",
    preset: str = "small",
    epochs: int | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    threads: int | None = None,
    cache_root: Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> CandidateResult:
    """Train the candidate generator(s) on ``DATA/train``, export ONNX, report Recall@K.

    ``model`` is ``logistic``, ``lstm`` or ``ensemble`` (trains both, writes
    ``OUT/{logistic,lstm,ensemble}/candidate.onnx`` and copies the best one to
    ``OUT/candidate.onnx``); a single model writes ``OUT/candidate.onnx``. Checkpoints go to
    ``OUT/checkpoints/{model}/last.pt``; the report (evaluated on ``DATA/test``, else
    ``DATA/validate``) to ``OUT/report/``. ``threads`` (torch and ONNX Runtime) defaults to 1: on a
    shared 2-core machine two 2-thread torch processes slowed LSTM epochs from 6 s to 180-270 s.
    The split caches go to ``cache_root`` (default: ``DATA/.cache``, see
    :func:`training.data.load_split`).
    ``overrides`` maps ``logistic`` / ``lstm`` to :class:`ModelConfig` fields to replace.
    """
    from training.candidate_report import write_report
    from training.data import load_split

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    rated_dir = _check_arguments(model, preset, data_dir)
    n_threads = threads or 1
    torch.set_num_threads(n_threads)
    out_dir.mkdir(parents=True, exist_ok=True)

    train_cache = load_split(data_dir / "train", cache_root=cache_root, progress=progress)
    rated_cache = load_split(rated_dir, cache_root=cache_root, progress=progress)
    if len(train_cache) < 2:
        raise ValueError(f"{data_dir / 'train'}: need at least 2 videos, found {len(train_cache)}")
    vocab = read_data_vocabulary(data_dir)
    num_classes = _count_classes(vocab, data_dir, [train_cache, rated_cache])

    members = ["logistic", "lstm"] if model == "ensemble" else [model]
    settings = {"preset": preset, "num_classes": num_classes, "epochs": epochs, "seed": seed}
    trained = _train_members(
        members, train_cache, out_dir, settings, overrides, resume=resume, progress=progress
    )
    onnx_paths = _export_graphs(trained, model, out_dir, seed)

    names = dict(vocab.names) if vocab is not None else {}
    extra = _generator_facts(onnx_paths, trained, out_dir)
    report = _recall_report(
        onnx_paths, rated_cache, rated_dir.name, names, extra, threads=n_threads, progress=progress
    )
    chosen = _choose(report, list(onnx_paths))
    report.update(
        {
            "chosen": chosen,
            "num_classes": num_classes,
            "preset": preset,
            "seed": seed,
            "train_videos": len(train_cache),
            "configs": {n: o.model.cfg.to_dict() for n, o in trained.items()},
        }
    )
    report_paths = write_report(report, out_dir / "report")
    _install(onnx_paths[chosen], out_dir / "candidate.onnx")
    return CandidateResult(
        onnx_path=out_dir / "candidate.onnx",
        onnx_paths=onnx_paths,
        model=chosen,
        k=int(report["k"]),
        report=report,
        report_paths=report_paths,
        checkpoints={n: o.checkpoint for n, o in trained.items()},
        num_classes=num_classes,
    )


def run_train_candidates(
    data: Path,
    out: Path,
    *,
    model: str = "lstm",
    preset: str = "small",
    epochs: int | None = None,
    seed: int = 0,
    resume: bool = False,
) -> CandidateResult:
    """The ``ccrl train-candidates`` command: train, export, report, print the recall table."""
    from training.candidate_report import format_table

    t0 = time.perf_counter()
    result = train_candidates(
        data, out, model=model, preset=preset, epochs=epochs, seed=seed, resume=resume
    )
    print(format_table(result.report))
    print(f"chosen generator: {result.model} -> {result.onnx_path}")
    for kind, path in result.report_paths.items():
        print(f"report ({kind}): {path}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    summary = {n: g["average_recall_at_k"] for n, g in result.report["generators"].items()}
    print(json.dumps({"k": result.k, "recall_at_k": summary}))
    return result
