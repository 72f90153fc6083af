"""``ccrl train DATA --out models/NAME``: the whole pipeline, stage by stage, with timings.

1. candidates: the video-level generators (logistic and LSTM, and their average) on ``train/``
   video labels (``training.candidates``), exported to ONNX with their Recall@K report;
2. for every trained generator (logistic, lstm, their ensemble): its outputs on ``validate/``
   (ONNX Runtime, the graph the service runs), the bank of the labelled ``validate/`` segment
   embeddings, and CCRL: the XGBoost pairwise model on the rated pairs of ``validate/``
   (leakage-free features, 90/10 split by video for early stopping and the grid, refit on all);
   the bundle keeps the generator whose CCRL is best on the 10% holdout (its graph, its bank);
3. baselines: the LSTM segment classifier (from the candidate LSTM) and the ConvNet, fine-tuned on
   the same rated segments with the same split, exported to ONNX;
4. the ensemble: a weighted mean of probabilities or of ranks of CCRL and the baselines (method and
   CCRL weight chosen on the holdout; the baselines share the rest equally);
5. the bundle (``training.bundle_writer``), then the evaluation on ``test/`` (``training.report``)
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
    subs = {n: folder / n / "candidate.onnx" for n in ("logistic", "lstm", "ensemble")}
    onnx_paths = {n: p for n, p in subs.items() if p.is_file()} or {str(rep["chosen"]): onnx_path}
    return CandidateResult(
        onnx_path=onnx_path,
        onnx_paths=onnx_paths,
        model=str(rep["chosen"]),
        k=int(rep["k"]),
        report=rep,
        report_paths=report_paths,
        checkpoints=checkpoints,
        num_classes=int(rep["num_classes"]),
    )


ENSEMBLE_CCRL_WEIGHTS = (1 / 3, 0.5, 0.6, 0.7, 0.8, 0.9)
"""CCRL weights tried for the ensemble (1/3 = the plain average of three members)."""


def _ensemble_choice(
    pairs: Any,
    tokens: list[str],
    hold: np.ndarray,
    member_scores: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Pick the averaging (``mean`` of probabilities or ``rank``) and CCRL's weight on the holdout
    pairs (mAP of the rated holdout pairs); the other members share the remaining weight."""
    from training.ccrl import pairs_map
    from training.submit import combine

    sel = np.flatnonzero(hold)
    cls = pairs.class_ids[sel]
    toks = [tokens[i] for i in sel.tolist()]
    y = pairs.y[sel]
    members = sorted(member_scores)
    single = {m: pairs_map(member_scores[m][sel], cls, toks, y) for m in members}
    result: dict[str, Any] = {"members": members, "holdout_map": single, "tried": []}
    best_key: tuple[float, float] = (-1.0, 0.0)
    n_other = max(len(members) - 1, 1)
    for method in ("mean", "rank"):
        for w in ENSEMBLE_CCRL_WEIGHTS if "ccrl" in members else (1 / len(members),):
            weights = [w if m == "ccrl" else (1 - w) / n_other for m in members]
            combined = np.zeros(len(sel), np.float32)
            for c in np.unique(cls).tolist():
                idx = np.flatnonzero(cls == c)
                parts = np.stack([member_scores[m][sel][idx] for m in members])
                combined[idx] = combine(parts, method, weights)
            m = pairs_map(combined, cls, toks, y)
            result["tried"].append({"method": method, "ccrl_weight": round(w, 4), "map": m})
            key = (m, -abs(w - 1 / 3))  # ties: the plainer average
            if key > best_key:
                best_key = key
                result.update(method=method, weights=[round(x, 6) for x in weights], map=m)
    return result


def run_train(
    data: Path,
    out: Path,
    *,
    preset: str = "small",
    seed: int = 0,
    threads: int | None = None,
    candidate_model: str = "ensemble",
    candidate_epochs: int | None = None,
    convnet_pretrain_epochs: int = 6,
    progress: bool = True,
    keep_work: bool = False,
    candidates: Path | Any | None = None,
    finetune: Any | None = None,
) -> Path:
    """Train everything and write the bundle ``out``; returns the manifest path.

    Args:
        data: corpus folder with ``train/``, ``validate/`` (rated) and ``test/`` (rated, optional).
        out: the bundle folder (``models/NAME``); intermediate files go to ``out/../.NAME-work``.
        preset: candidate model size (``small`` or ``paper``).
        seed: random seed of every stage.
        threads: torch / ONNX Runtime threads (default 1: on a shared 2-core machine, 2 OpenMP
            threads made LSTM training 2 to 10 times slower than 1 in our measurements).
        candidate_model: ``ensemble`` (default: trains the logistic and LSTM generators and
            keeps the best for CCRL, see above) or ``lstm`` (the LSTM baseline needs an LSTM).
        candidate_epochs: override the preset's candidate epochs.
        convnet_pretrain_epochs: ConvNet epochs on the ``train/`` video labels.
        keep_work: keep the intermediate folder (checkpoints, exported graphs) afterwards.
        candidates: reuse a finished ``ccrl train-candidates`` folder (or a ``CandidateResult``)
            instead of training the generator again.
        finetune: a ``training.baselines.FinetuneConfig`` for the baselines (default settings).
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

    with timer.stage("read validate/"):
        val_videos = list(read_videos([data / "validate"]))
        rated_videos = sum(1 for v in val_videos if len(v.segment_labels))
        if rated_videos < 2:
            raise ValueError(f"{data / 'validate'}: needs at least 2 rated videos")
        _, holdout = split_by_video(len(val_videos), 0.1, seed)
        n_val = len(val_videos)

    # one XGBoost thread: the rated pairs are few thousand rows, and OpenMP threads that spin on a
    # busy 2-core machine made 2 threads 30x slower than 1 in our measurements
    ccrl_cfg = CcrlConfig(nthread=1)
    generators = dict(cand.onnx_paths) or {cand.model: cand.onnx_path}
    fits: dict[str, dict[str, Any]] = {}
    for gname, gpath in generators.items():
        with timer.stage(f"ccrl on the {gname} generator (bank, rated validate/ pairs, xgboost)"):
            runner = CandidateRunner(gpath, threads=n_threads)
            outs = runner.run_all(val_videos, desc=f"validate ({gname})", progress=progress)
            g_bank = build_bank(outs, num_classes)
            g_pairs = rated_pairs(outs, g_bank, max_sim=ccrl_cfg.max_sim, progress=progress)
            g_tokens = [
                f"{outs[v].id}:{s * 5}" for v, s in zip(g_pairs.video, g_pairs.segment, strict=True)
            ]
            g_ccrl = train_ccrl(g_pairs, holdout, g_tokens, ccrl_cfg, seed=seed, progress=progress)
            best = max(r["holdout_map"] for r in g_ccrl.search)
            fits[gname] = {
                "path": gpath,
                "bank": g_bank,
                "pairs": g_pairs,
                "tokens": g_tokens,
                "ccrl": g_ccrl,
                "holdout_map": best,
            }
            print(
                f"  {gname}: bank {len(g_bank)} segments ({int(g_bank.pos_count.sum())} "
                f"positive), D={g_bank.dim}; {len(g_pairs)} pairs, {g_ccrl.rounds} rounds, "
                f"holdout mAP {best:.4f}"
            )
    # the generator of the bundle: the best CCRL on the validate holdout (ties: the report's choice)
    chosen = max(fits, key=lambda g: (fits[g]["holdout_map"], g == cand.model))
    fit = fits[chosen]
    bank, pairs, tokens, ccrl = fit["bank"], fit["pairs"], fit["tokens"], fit["ccrl"]
    print(f"  generator for the bundle: {chosen} (candidate report chose {cand.model})")

    ft_cfg = finetune or bl.FinetuneConfig()
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
        train_cache = load_split(data / "train")
        train_videos = np.bincount(train_cache.labels, minlength=num_classes)[:num_classes]
        pre_losses = bl.pretrain_convnet(
            net,
            train_cache,
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
        print(
            f"  ensemble: {ensemble['method']} of {ensemble['members']} with weights "
            f"{ensemble['weights']} (holdout mAP {ensemble['map']:.4f})"
        )

    with timer.stage("bundle"):
        rated = read_rated_classes(data, pairs.class_ids)
        config = {
            "data": str(data),
            "preset": preset,
            "seed": seed,
            "threads": n_threads,
            "candidate_model": chosen,
            "candidate_report_choice": cand.model,
            "generators_holdout_map": {g: f["holdout_map"] for g, f in fits.items()},
            "cg_top_k": cand.k,
            "cg_rule": "K = largest K with K / num_videos <= 1/20 (per ranked corpus)",
            "ensemble": {
                "members": ensemble["members"],
                "method": ensemble["method"],
                "weights": ensemble["weights"],
            },
            "ccrl": config_dict(ccrl_cfg),
            "finetune": asdict(ft_cfg),
            "convnet_pretrain_epochs": convnet_pretrain_epochs,
            "holdout": {"fraction": 0.1, "videos": int(holdout.sum())},
            "training": {
                "validate_videos": n_val,
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
            candidate_onnx=fit["path"],
            candidate_meta={
                "input": "frames",
                "num_classes": num_classes,
                "embedding_dim": bank.dim,
                "model": chosen,
                "preset": preset,
            },
            booster=ccrl.booster,
            ccrl_params={**ccrl.params, "rounds": ccrl.rounds, "max_sim": ccrl_cfg.max_sim},
            bank=bank,
            classes=[
                {**c, "train_videos": int(train_videos[c["id"]])}
                for c in read_classes(data, num_classes)
            ],
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
