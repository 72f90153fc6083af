"""Writing a model bundle (``models/NAME/``): files, manifest, sha256 of every file.

Hashing rule: ``manifest.files`` lists the sha256 of EVERY other file of the bundle, ``report/``
included, and ``manifest.sha256`` holds the sha256 of ``manifest.json`` itself (written last, by
:func:`write_manifest`). Whoever rewrites a file of the bundle (``ccrl evaluate`` rewriting
``report/``) calls :func:`finalize_manifest` afterwards, which re-hashes and rewrites both.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xgboost as xgb

from service.bank import ClassBank
from service.bundle import (
    FORMAT_VERSION,
    MANIFEST,
    MANIFEST_HASH,
    manifest_hash_line,
    sha256_file,
)
from service.features import CATEGORICAL, FEATURE_NAMES

if TYPE_CHECKING:
    from service.vocab import Vocabulary


def library_versions() -> dict[str, str]:
    """Versions of the libraries a bundle depends on (numpy, xgboost, onnxruntime, torch, onnx)."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "numpy": np.__version__, "xgboost": xgb.__version__}
    for dist in ("onnxruntime", "onnxruntime-gpu", "torch", "onnx"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out


def class_entries(vocab: Vocabulary | None, num_classes: int) -> list[dict[str, Any]]:
    """``[{"id", "name", "vertical"}]`` for class ids 0..C-1 (names empty when unknown)."""
    names = vocab.names if vocab is not None else {}
    verts = vocab.verticals if vocab is not None else {}
    return [
        {"id": c, "name": names.get(c, f"class {c}"), "vertical": verts.get(c, "")}
        for c in range(num_classes)
    ]


def hash_files(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the manifest and its hash, by posix relpath."""
    out: dict[str, str] = {}
    for fp in sorted(root.rglob("*")):
        rel = fp.relative_to(root).as_posix()
        if fp.is_file() and rel not in (MANIFEST, MANIFEST_HASH):
            out[rel] = sha256_file(fp)
    return out


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and a rename (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False, default=_json_default)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(out: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest.json`` and then its ``manifest.sha256`` (both atomically)."""
    mpath = Path(out) / MANIFEST
    write_json_atomic(mpath, manifest)
    write_text_atomic(Path(out) / MANIFEST_HASH, manifest_hash_line(mpath))
    return mpath


def write_text_atomic(path: Path, text: str) -> None:
    """Write text through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_bundle(
    out: Path,
    *,
    name: str,
    candidate_onnx: Path,
    candidate_meta: Mapping[str, Any],
    booster: xgb.Booster,
    ccrl_params: Mapping[str, Any],
    bank: ClassBank,
    classes: list[dict[str, Any]],
    rated_classes: list[int],
    baselines: Mapping[str, Path] | None = None,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, Path] | None = None,
) -> Path:
    """Write every file of a bundle into ``out`` and its manifest; returns the manifest path.

    Args:
        out: the bundle folder (created; existing model files are overwritten).
        name: bundle name (usually ``out.name``).
        candidate_onnx: the candidate graph to copy in as ``candidate.onnx``.
        candidate_meta: ``input, num_classes, embedding_dim, model, preset`` of the graph.
        booster: the CCRL model, saved as ``ccrl.ubj`` (XGBoost native UBJSON).
        ccrl_params: training parameters to record (XGBoost params, rounds, max_sim, ...).
        bank: the labelled-embedding bank, saved as ``bank.npz``.
        classes: ``[{"id", "name", "vertical"}]`` for every class id.
        rated_classes: the class ids that are ranked (segment_label_ids).
        baselines: baseline name -> ONNX graph, copied in as ``baseline_{name}.onnx``.
        config: the training configuration.
        metrics: evaluation metrics (may be filled later by :func:`finalize_manifest`).
        extra_files: relpath -> file to copy in (e.g. the candidate recall report).
    """
    out = Path(out)
    base_files = _write_model_files(out, candidate_onnx, booster, bank, baselines, extra_files)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": datetime.now(UTC).strftime("%Y%m%d%H%M%S"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {},
        "classes": classes,
        "rated_classes": [int(c) for c in rated_classes],
        "candidate": {"file": "candidate.onnx", **dict(candidate_meta)},
        "ccrl": {
            "file": "ccrl.ubj",
            "feature_names": list(FEATURE_NAMES),
            "categorical": list(CATEGORICAL),
            "params": dict(ccrl_params),
        },
        "bank": {
            "file": "bank.npz",
            "entries": len(bank),
            "dim": bank.dim,
            "positives": int(bank.pos_count.sum()),
            "negatives": int(bank.neg_count.sum()),
        },
        "baselines": base_files,
        "config": dict(config or {}),
        "metrics": dict(metrics or {}),
        "versions": library_versions(),
    }
    manifest["files"] = hash_files(out)
    return write_manifest(out, manifest)


def _write_model_files(
    out: Path,
    candidate_onnx: Path,
    booster: xgb.Booster,
    bank: ClassBank,
    baselines: Mapping[str, Path] | None,
    extra_files: Mapping[str, Path] | None,
) -> dict[str, str]:
    """Copy or save every file of the bundle but the manifest; return baseline name -> relpath."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(candidate_onnx, out / "candidate.onnx")
    booster.save_model(str(out / "ccrl.ubj"))
    bank.save(out / "bank.npz")
    base_files: dict[str, str] = {}
    for bname, src in (baselines or {}).items():
        rel = f"baseline_{bname}.onnx"
        shutil.copyfile(src, out / rel)
        base_files[bname] = rel
    for rel, src in (extra_files or {}).items():
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return base_files


def finalize_manifest(out: Path, *, metrics: Mapping[str, Any] | None = None) -> Path:
    """Re-hash every file of the bundle (after the report was written) and optionally replace
    ``metrics``; rewrites ``manifest.json`` atomically."""
    mpath = Path(out) / MANIFEST
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    if metrics is not None:
        manifest["metrics"] = dict(metrics)
    manifest["files"] = hash_files(Path(out))
    return write_manifest(Path(out), manifest)
