"""``ccrl train DATA --out models/NAME``: the whole pipeline, stage by stage, with timings.

1. candidates: the video-level LSTM generator on ``train/`` video labels (``training.candidates``),
   exported as ``candidate.onnx`` with its Recall@K report;
2. candidate outputs of every ``validate/`` video (ONNX Runtime, the graph the service runs);
3. the bank: the labelled ``validate/`` segment embeddings;
4. CCRL: the XGBoost pairwise model on the rated pairs of ``validate/`` (leakage-free features,
   90/10 split by video for early stopping and the grid, refit on all);
5. baselines: the LSTM segment classifier (from the candidate LSTM) and the ConvNet, fine-tuned on
   the same rated segments with the same split, exported to ONNX;
6. the ensemble: mean of probabilities or mean of ranks of CCRL + baselines, chosen on the holdout;
7. the bundle (``training.bundle_writer``), then the evaluation on ``test/`` (``training.report``)
   written into ``BUNDLE/report/`` and the manifest's metrics (sha256 recomputed after the report).
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class StageTimer:
    """Prints ``[stage] name ... done in X s`` lines and keeps the timings."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        print(f"[{time.perf_counter() - self.t0:6.1f}s] {name} ...", flush=True)
        yield
        self.seconds[name] = round(time.perf_counter() - t, 2)
        print(f"[{time.perf_counter() - self.t0:6.1f}s] {name} done in {self.seconds[name]} s")

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 2)


def read_classes(data: Path, num_classes: int) -> list[dict[str, Any]]:
    """``[{"id", "name", "vertical"}]`` from ``DATA/vocabulary.csv`` (names empty when absent)."""
    from training.bundle_writer import class_entries

    path = Path(data) / "vocabulary.csv"
    if not path.is_file():
        return class_entries(None, num_classes)
    try:
        from service.vocab import read_vocabulary

        return class_entries(read_vocabulary(path), num_classes)
    except ImportError:
        pass
    names: dict[int, str] = {}
    verticals: dict[int, str] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                c = int(row["Index"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line}: bad or missing Index") from exc
            names[c] = row.get("Name") or ""
            verticals[c] = row.get("Vertical1") or ""
    return [
        {"id": c, "name": names.get(c, f"class {c}"), "vertical": verticals.get(c, "")}
        for c in range(num_classes)
    ]


def read_rated_classes(data: Path, fallback: np.ndarray) -> list[int]:
    """Class ids of ``DATA/segment_label_ids.csv`` (header ``Index``), else ``fallback``."""
    path = Path(data) / "segment_label_ids.csv"
    if not path.is_file():
        return sorted(int(c) for c in np.unique(fallback))
    try:
        from service.vocab import read_segment_label_ids

        return sorted(int(c) for c in read_segment_label_ids(path))
    except ImportError:
        pass
    out: list[int] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for line, row in enumerate(reader, start=2):
            if not row or not row[0].strip():
                continue
            try:
                out.append(int(row[0]))
            except ValueError as exc:
                raise ValueError(f"{path}:{line}: bad class id {row[0]!r}") from exc
    return sorted(out)


def load_candidates(folder: Path) -> Any:
    """A ``CandidateResult`` for a finished ``ccrl train-candidates`` output folder."""
    from training.candidates import CandidateResult

    report_json = folder / "report" / "candidates.json"
    onnx_path = folder / "candidate.onnx"
    for p in (report_json, onnx_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing (is {folder} a train-candidates output?)")
    rep = json.loads(report_json.read_text(encoding="utf-8"))
    checkpoints = {p.parent.name: p for p in sorted((folder / "checkpoints").glob("*/last.pt"))}
    report_paths = {p.suffix.lstrip("."): p for p in sorted((folder / "report").iterdir())}
    return CandidateResult(
        onnx_path=onnx_path,
        onnx_paths={str(rep["chosen"]): onnx_path},
        model=str(rep["chosen"]),
        k=int(rep["k"]),
        report=rep,
        report_paths=report_paths,
        checkpoints=checkpoints,
        num_classes=int(rep["num_classes"]),
    )


def _ensemble_choice(
    pairs: Any,
    tokens: list[str],
    hold: np.ndarray,
    member_scores: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Pick ``mean`` or ``rank`` averaging on the holdout pairs (mAP of the rated holdout pairs)."""
    from training.ccrl import pairs_map
    from training.submit import combine

    sel = np.flatnonzero(hold)
    cls = pairs.class_ids[sel]
    toks = [tokens[i] for i in sel.tolist()]
    y = pairs.y[sel]
    members = sorted(member_scores)
    single = {m: pairs_map(member_scores[m][sel], cls, toks, y) for m in members}
    result: dict[str, Any] = {"members": members, "holdout_map": single}
    best_method, best = "mean", -1.0
    for method in ("mean", "rank"):
        combined = np.zeros(len(sel), np.float32)
        for c in np.unique(cls).tolist():
            idx = np.flatnonzero(cls == c)
            parts = np.stack([member_scores[m][sel][idx] for m in members])
            combined[idx] = combine(parts, method)
        m = pairs_map(combined, cls, toks, y)
        result["holdout_map"][f"ensemble_{method}"] = m
        if m > best + 1e-12:
            best_method, best = method, m
    result["method"] = best_method
    return result


def run_train(
    data: Path,
    out: Path,
    *,
    preset: str = "small",
    seed: int = 0,
    threads: int | None = None,
    candidate_model: str = "lstm",
    candidate_epochs: int | None = None,
    convnet_pretrain_epochs: int = 2,
    progress: bool = True,
    keep_work: bool = False,
    candidates: Path | Any | None = None,
) -> Path:
    """Train everything and write the bundle ``out``; returns the manifest path.

    Args:
        data: corpus folder with ``train/``, ``validate/`` (rated) and ``test/`` (rated, optional).
        out: the bundle folder (``models/NAME``); intermediate files go to ``out/../.NAME-work``.
        preset: candidate model size (``small`` or ``paper``).
        seed: random seed of every stage.
        threads: torch / ONNX Runtime threads (default 1: on a shared 2-core machine, 2 OpenMP
            threads made LSTM training 2 to 10 times slower than 1 in our measurements).
        candidate_model: the generator (``lstm`` or ``ensemble``; the LSTM baseline needs an LSTM).
        candidate_epochs: override the preset's candidate epochs.
        convnet_pretrain_epochs: ConvNet epochs on the ``train/`` video labels.
        keep_work: keep the intermediate folder (checkpoints, exported graphs) afterwards.
        candidates: reuse a finished ``ccrl train-candidates`` folder (or a ``CandidateResult``)
            instead of training the generator again.
    """
    import torch

    from service.tfrecord import read_videos
    from training import baselines as bl
    from training.bundle_writer import finalize_manifest, write_bundle
    from training.candidates import LstmModel, model_from_checkpoint, train_candidates
    from training.ccrl import (
        CandidateRunner,
        CcrlConfig,
        build_bank,
        config_dict,
        rated_pairs,
        split_by_video,
        train_ccrl,
    )
    from training.data import load_split
    from training.report import run_evaluate

    data, out = Path(data), Path(out)
    for split in ("train", "validate"):
        if not (data / split).is_dir():
            raise FileNotFoundError(f"{data}: no {split}/ folder (expected a `ccrl synth` layout)")
    if candidate_model not in ("lstm", "ensemble"):
        raise ValueError(f"candidate_model must be 'lstm' or 'ensemble', got {candidate_model!r}")
    n_threads = max(1, int(threads or 1))
    torch.set_num_threads(n_threads)
    work = out.parent / f".{out.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    timer = StageTimer()

    with timer.stage("candidates (train/ video labels)"):
        if candidates is None:
            cand = train_candidates(
                data,
                work / "candidates",
                model=candidate_model,
                preset=preset,
                epochs=candidate_epochs,
                seed=seed,
                progress=progress,
                threads=n_threads,
            )
        elif isinstance(candidates, (str, Path)):
            cand = load_candidates(Path(candidates))
            print(f"  reusing the candidate generator of {candidates}")
        else:
            cand = candidates
        num_classes = cand.num_classes
        lstm_ckpt = cand.checkpoints.get("lstm")
        if lstm_ckpt is None:
            raise RuntimeError("the candidate stage trained no LSTM (needed by the lstm baseline)")
        lstm = model_from_checkpoint(lstm_ckpt)
        if not isinstance(lstm, LstmModel):
            raise RuntimeError(
                f"{lstm_ckpt}: expected an LSTM checkpoint, got {type(lstm).__name__}"
            )

    with timer.stage("candidate outputs of validate/"):
        val_videos = list(read_videos([data / "validate"]))
        runner = CandidateRunner(cand.onnx_path, threads=n_threads)
        outputs = runner.run_all(val_videos, desc="validate", progress=progress)
        rated_videos = [i for i, o in enumerate(outputs) if len(o.rated_class)]
        if len(rated_videos) < 2:
            raise ValueError(f"{data / 'validate'}: needs at least 2 rated videos")

    with timer.stage("bank"):
        bank = build_bank(outputs, num_classes)
        print(
            f"  bank: {len(bank)} labelled segments ({int(bank.pos_count.sum())} positive), "
            f"D={bank.dim}"
        )

    # one XGBoost thread: the rated pairs are few thousand rows, and OpenMP threads that spin on a
    # busy 2-core machine made 2 threads 30x slower than 1 in our measurements
    ccrl_cfg = CcrlConfig(nthread=1)
    with timer.stage("ccrl (xgboost on rated validate/ pairs)"):
        pairs = rated_pairs(outputs, bank, max_sim=ccrl_cfg.max_sim, progress=progress)
        _, holdout = split_by_video(len(outputs), 0.1, seed)
        tokens = [
            f"{outputs[v].id}:{s * 5}" for v, s in zip(pairs.video, pairs.segment, strict=True)
        ]
        ccrl = train_ccrl(pairs, holdout, tokens, ccrl_cfg, seed=seed, progress=progress)
        print(f"  ccrl: {len(pairs)} pairs, {ccrl.rounds} rounds, params {ccrl.params}")

    ft_cfg = bl.FinetuneConfig()
    with timer.stage("baseline lstm (fine-tune the candidate LSTM)"):
        segs = bl.segment_set(val_videos, num_classes)
        res_lstm = bl.finetune(
            bl.baseline_from_candidate(lstm),
            segs,
            holdout,
            ft_cfg,
            seed=seed,
            progress=progress,
            name="lstm",
        )
        bl.export_baseline(res_lstm.model, work / "baseline_lstm.onnx")
    with timer.stage("baseline convnet (pretrain on train/, fine-tune)"):
        net = bl.convnet_like(lstm)
        pre_losses = bl.pretrain_convnet(
            net,
            load_split(data / "train"),
            epochs=convnet_pretrain_epochs,
            seed=seed,
            progress=progress,
        )
        res_conv = bl.finetune(
            net, segs, holdout, ft_cfg, seed=seed, progress=progress, name="convnet"
        )
        bl.export_baseline(res_conv.model, work / "baseline_convnet.onnx")
    del val_videos

    with timer.stage("ensemble choice (validate holdout)"):
        seg_keys = zip(segs.video.tolist(), segs.segment.tolist(), strict=True)
        row_of = {key: i for i, key in enumerate(seg_keys)}
        seg_rows = np.array(
            [row_of[(int(v), int(s))] for v, s in zip(pairs.video, pairs.segment, strict=True)]
        )
        hold_pairs = holdout[pairs.video]
        members = {
            "ccrl": ccrl.holdout_scores,
            "lstm": res_lstm.holdout_probs[seg_rows, pairs.class_ids],
            "convnet": res_conv.holdout_probs[seg_rows, pairs.class_ids],
        }
        ensemble = _ensemble_choice(pairs, tokens, hold_pairs, members)
        rounded = {k: round(v, 4) for k, v in ensemble["holdout_map"].items()}
        print(f"  holdout mAP: {json.dumps(rounded)}")
        print(f"  ensemble: {ensemble['method']} of {ensemble['members']}")

    with timer.stage("bundle"):
        rated = read_rated_classes(data, pairs.class_ids)
        config = {
            "data": str(data),
            "preset": preset,
            "seed": seed,
            "threads": n_threads,
            "candidate_model": cand.model,
            "cg_top_k": cand.k,
            "cg_rule": "K = largest K with K / num_videos <= 1/20 (per ranked corpus)",
            "ensemble": {"members": ensemble["members"], "method": ensemble["method"]},
            "ccrl": config_dict(ccrl_cfg),
            "finetune": asdict(ft_cfg),
            "convnet_pretrain_epochs": convnet_pretrain_epochs,
            "holdout": {"fraction": 0.1, "videos": int(holdout.sum())},
            "training": {
                "validate_videos": len(outputs),
                "rated_pairs": len(pairs),
                "positives": int(pairs.y.sum()),
                "ccrl": ccrl.info(),
                "lstm": res_lstm.info(),
                "convnet": {**res_conv.info(), "pretrain_losses": pre_losses},
                "ensemble_holdout_map": ensemble["holdout_map"],
            },
        }
        extra = {f"report/candidates/{p.name}": p for p in cand.report_paths.values()}
        write_bundle(
            out,
            name=out.name,
            candidate_onnx=cand.onnx_path,
            candidate_meta={
                "input": "frames",
                "num_classes": num_classes,
                "embedding_dim": bank.dim,
                "model": cand.model,
                "preset": preset,
            },
            booster=ccrl.booster,
            ccrl_params={**ccrl.params, "rounds": ccrl.rounds, "max_sim": ccrl_cfg.max_sim},
            bank=bank,
            classes=read_classes(data, num_classes),
            rated_classes=rated,
            baselines={
                "lstm": work / "baseline_lstm.onnx",
                "convnet": work / "baseline_convnet.onnx",
            },
            config=config,
            extra_files=extra,
        )

    metrics: dict[str, Any] = {}
    test_dir = data / "test"
    if test_dir.is_dir():
        with timer.stage("evaluate on test/"):
            metrics = run_evaluate(out, [test_dir], threads=n_threads, progress=progress)
    else:
        print(f"  no {test_dir}: skipping the evaluation")
    metrics["train_seconds"] = {**timer.seconds, "total": timer.total}
    manifest = finalize_manifest(out, metrics=metrics)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    print(f"bundle {out} written in {timer.total:.0f} s (manifest {manifest})")
    return manifest
