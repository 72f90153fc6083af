"""Reading a model bundle (``models/NAME/``) and scoring pair matrices with its XGBoost model.

The layout is in docs/contracts.md: ``manifest.json`` (with the sha256 of every other file),
``manifest.sha256`` (the sha256 of ``manifest.json`` itself, so that an edited manifest is refused
too), ``candidate.onnx``, ``ccrl.ubj``, ``bank.npz``, ``baseline_*.onnx`` and ``report/``. Runtime
only: numpy and xgboost; never torch. The ONNX graphs are opened and run by
:mod:`service.candidate`.

Bundles of format 1 (written before ``manifest.sha256`` existed) still load, with a warning, and
every other check; from format 2 on a missing ``manifest.sha256`` is refused like a missing file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from service.bank import MAX_SIM_CAP, ClassBank
from service.features import FEATURE_NAMES, FEATURE_TYPES, PairMatrix

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MANIFEST_HASH = "manifest.sha256"
"""Holds ``<hex sha256>  manifest.json``, the ``sha256sum`` line of the manifest."""
_UNHASHED_FORMAT = 1  # the last format whose bundles have no manifest.sha256

log = logging.getLogger("ccrl.bundle")


class BundleError(Exception):
    """A bundle that cannot be used: missing or tampered file, bad manifest. Names the file."""


@dataclass(frozen=True)
class ClassInfo:
    """One vocabulary entry."""

    id: int
    name: str
    vertical: str


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` (unknown keys are kept in ``raw``)."""

    format_version: int
    name: str
    version: str
    created: str
    files: dict[str, str]
    classes: list[ClassInfo]
    rated_classes: list[int]
    candidate: dict[str, Any]
    ccrl: dict[str, Any]
    bank: dict[str, Any]
    baselines: dict[str, str]
    config: dict[str, Any]
    metrics: dict[str, Any]
    versions: dict[str, str]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = MANIFEST) -> Manifest:
        """Validate the required keys and types; raises :class:`BundleError` naming ``where``."""
        required = ("format_version", "files", "classes", "candidate", "ccrl", "bank")
        missing = [k for k in required if k not in d]
        if missing:
            raise BundleError(f"{where}: missing keys {missing}")
        try:
            classes = [
                ClassInfo(int(c["id"]), str(c.get("name", "")), str(c.get("vertical", "")))
                for c in d["classes"]
            ]
            rated = [int(c) for c in d.get("rated_classes", [c.id for c in classes])]
            for key in ("candidate", "ccrl", "bank"):
                if "file" not in d[key]:
                    raise BundleError(f"{where}: {key}.file is missing")
            return cls(
                format_version=int(d["format_version"]),
                name=str(d.get("name", "")),
                version=str(d.get("version", "")),
                created=str(d.get("created", "")),
                files={str(k): str(v) for k, v in d["files"].items()},
                classes=classes,
                rated_classes=rated,
                candidate=dict(d["candidate"]),
                ccrl=dict(d["ccrl"]),
                bank=dict(d["bank"]),
                baselines={str(k): str(v) for k, v in d.get("baselines", {}).items()},
                config=dict(d.get("config", {})),
                metrics=dict(d.get("metrics", {})),
                versions={str(k): str(v) for k, v in d.get("versions", {}).items()},
                raw=d,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(f"{where}: malformed manifest ({exc!r})") from exc


@dataclass
class Bundle:
    """A loaded bundle: manifest, bank and XGBoost model in memory, ONNX graphs by path.

    Attributes:
        path: the bundle folder.
        manifest: the parsed manifest.
        feature_names: the pair-matrix column order the XGBoost model was trained on.
        bank: the labelled-embedding bank (C classes, D dims).
        booster: the CCRL XGBoost model.
        candidate_path: ``candidate.onnx`` (frames [F, 1152] -> video_probs, segment_probs,
            segment_embeddings).
        baseline_paths: baseline name -> ONNX graph (frames [F, 1152] -> segment_probs [S, C]).
    """

    path: Path
    manifest: Manifest
    feature_names: tuple[str, ...]
    bank: ClassBank
    booster: xgb.Booster
    candidate_path: Path
    baseline_paths: dict[str, Path]

    @property
    def num_classes(self) -> int:
        return self.bank.num_classes

    @property
    def class_names(self) -> dict[int, str]:
        return {c.id: c.name for c in self.manifest.classes}

    @property
    def rated_classes(self) -> npt.NDArray[np.int64]:
        """The classes the bundle ranks (the corpus's segment_label_ids), int64 [R]."""
        return np.asarray(self.manifest.rated_classes, dtype=np.int64)

    @property
    def max_sim(self) -> bool:
        """Whether the model was trained with the max-cosine features (pass to the builder)."""
        return bool(self.manifest.ccrl.get("params", {}).get("max_sim", True))

    @property
    def cg_top_k(self) -> int:
        """Videos kept per class by candidate generation (for corpus-level ranking)."""
        return int(self.manifest.config.get("cg_top_k", 0))

    @property
    def candidate_defaults(self) -> tuple[int, float]:
        """(``max_classes``, ``min_video_score``) of the per-video candidate classes, as chosen
        on the holdout at training time (``config.service``); (20, 0.0) for an older bundle."""
        sv = self.manifest.config.get("service") or {}
        max_classes = int(sv.get("max_classes") or DEFAULT_MAX_CLASSES)
        return max(1, max_classes), float(sv.get("min_video_score") or 0.0)


DEFAULT_MAX_CLASSES = 20
"""Candidate classes per video of a bundle that records no choice of its own."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: str | Path) -> Manifest:
    """Parse ``BUNDLE/manifest.json`` (``path`` may be the folder or the file)."""
    p = Path(path)
    mpath = p / MANIFEST if p.is_dir() else p
    if not mpath.is_file():
        raise BundleError(f"{mpath}: manifest not found (is {p} a model bundle?)")
    try:
        d = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath}: unreadable manifest ({exc})") from exc
    if not isinstance(d, dict):
        raise BundleError(f"{mpath}: manifest must be a JSON object")
    return Manifest.from_dict(d, where=str(mpath))


def manifest_hash_line(manifest_path: Path) -> str:
    """The ``manifest.sha256`` line of a manifest file: ``<hex sha256>  manifest.json``."""
    return f"{sha256_file(manifest_path)}  {MANIFEST}\n"


def verify_manifest(root: Path, manifest: Manifest) -> None:
    """Check ``manifest.json`` against ``manifest.sha256``; raises :class:`BundleError` when the
    manifest was edited, or when the hash file is missing from a bundle of format 2 or later."""
    hpath = root / MANIFEST_HASH
    if not hpath.is_file():
        if manifest.format_version <= _UNHASHED_FORMAT:
            log.warning(
                "%s: no %s (format %d bundle): the manifest itself is not verified",
                root,
                MANIFEST_HASH,
                manifest.format_version,
            )
            return
        raise BundleError(f"{hpath}: missing (the manifest's own sha256)")
    try:
        want = hpath.read_text(encoding="ascii").split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise BundleError(f"{hpath}: unreadable ({exc!r})") from exc
    got = sha256_file(root / MANIFEST)
    if not hmac.compare_digest(want, got):
        raise BundleError(
            f"{root / MANIFEST}: sha256 mismatch ({MANIFEST_HASH} {want[:12]}…, file {got[:12]}…): "
            "the manifest was edited"
        )


def verify_files(root: Path, manifest: Manifest) -> None:
    """Check the manifest's own sha256, then that every file it lists exists and has its sha256.

    Raises :class:`BundleError` naming the first missing or tampered file.
    """
    verify_manifest(root, manifest)
    for rel, digest in sorted(manifest.files.items()):
        fp = root / rel
        if not fp.is_file():
            raise BundleError(f"{fp}: file listed in the manifest is missing")
        got = sha256_file(fp)
        if got != digest:
            raise BundleError(f"{fp}: sha256 mismatch (manifest {digest[:12]}…, file {got[:12]}…)")


def load_booster(path: str | Path, nthread: int = 1) -> xgb.Booster:
    """Load an XGBoost model saved in its native format (UBJSON or JSON), with ``nthread``."""
    booster = xgb.Booster(params={"nthread": int(nthread)})
    try:
        booster.load_model(str(path))
    except xgb.core.XGBoostError as exc:
        raise BundleError(f"{path}: not a loadable XGBoost model ({exc})") from exc
    booster.set_param({"nthread": int(nthread)})
    return booster


def predict_pairs(
    booster: xgb.Booster, pairs: PairMatrix | npt.ArrayLike
) -> npt.NDArray[np.float32]:
    """Relevance probabilities for a pair matrix (float32 [N, NF]) -> float32 [N].

    The one scoring call used by training (evaluate, submit) and serving, so scores agree exactly.
    ``inplace_predict`` uses the booster's own feature types (the class id is categorical).
    """
    x = pairs.x if isinstance(pairs, PairMatrix) else np.asarray(pairs, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != booster.num_features():
        raise ValueError(
            f"pair matrix must be [N, {booster.num_features()}], got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    out = booster.inplace_predict(np.ascontiguousarray(x, dtype=np.float32))
    return np.asarray(out, dtype=np.float32).reshape(-1)


def load_bundle(path: str | Path, verify: bool = True, *, nthread: int = 1) -> Bundle:
    """Load a bundle folder.

    Args:
        path: the bundle folder (``models/NAME``).
        verify: check the sha256 of every file listed in the manifest first.
        nthread: XGBoost threads for the loaded booster.

    Raises:
        BundleError: missing or tampered file, bad manifest, feature-order mismatch.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: bundle folder not found")
    manifest = read_manifest(root)
    if manifest.format_version > FORMAT_VERSION:
        raise BundleError(
            f"{root / MANIFEST}: format_version {manifest.format_version} is newer than this "
            f"reader ({FORMAT_VERSION})"
        )
    if verify:
        verify_files(root, manifest)
    names = tuple(manifest.ccrl.get("feature_names", FEATURE_NAMES))
    if names != FEATURE_NAMES:
        raise BundleError(
            f"{root / MANIFEST}: ccrl.feature_names differ from this runtime's FEATURE_NAMES "
            f"(bundle {len(names)} columns, runtime {len(FEATURE_NAMES)}); retrain or upgrade"
        )
    files = {
        "candidate": root / manifest.candidate["file"],
        "ccrl": root / manifest.ccrl["file"],
        "bank": root / manifest.bank["file"],
    }
    for key, fp in files.items():
        if not fp.is_file():
            raise BundleError(f"{fp}: {key} file is missing")
    try:
        cap = int(manifest.ccrl.get("params", {}).get("max_sim_cap", MAX_SIM_CAP))
        bank = ClassBank.load(files["bank"], scan_cap=cap)
    except ValueError as exc:
        raise BundleError(str(exc)) from exc
    booster = load_booster(files["ccrl"], nthread=nthread)
    if booster.num_features() != len(FEATURE_NAMES):
        raise BundleError(
            f"{files['ccrl']}: model has {booster.num_features()} features, "
            f"expected {len(FEATURE_NAMES)}"
        )
    if list(booster.feature_types or []) != list(FEATURE_TYPES):
        booster.feature_types = list(FEATURE_TYPES)
    baselines: dict[str, Path] = {}
    for name, rel in manifest.baselines.items():
        fp = root / rel
        if not fp.is_file():
            raise BundleError(f"{fp}: baseline {name!r} file is missing")
        baselines[name] = fp
    if manifest.classes and len(manifest.classes) != bank.num_classes:
        raise BundleError(
            f"{files['bank']}: bank has {bank.num_classes} classes, manifest lists "
            f"{len(manifest.classes)}"
        )
    return Bundle(root, manifest, names, bank, booster, files["candidate"], baselines)
