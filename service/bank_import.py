"""``ccrl bank import BUNDLE ENTRIES.npz --out NEW_BUNDLE``: a bundle whose bank is given entries.

``ENTRIES.npz`` (read with ``allow_pickle=False``) holds five arrays of N labelled segments:
``embeddings`` float [N, D] (D = the bundle's embedding dim), ``classes`` int [N] (vocabulary ids),
``labels`` int [N] (1 positive, 0 negative), ``videos`` str [N] (video ids) and ``starts`` int [N]
(segment start frames, multiples of 5). Every check names the array that fails it.

The new bundle is a copy of ``BUNDLE`` with ``bank.npz`` rebuilt from the entries, the manifest's
``bank`` facts and every sha256 recomputed, and its ``version`` changed (``{old}+bank.{sha12}``),
so a Redis namespace (version and bank hash) never mixes the two banks. It is loaded back with the
bundle reader before the command returns. Runtime only (numpy): no torch, no training code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.bank import ClassBank
from service.bundle import (
    MANIFEST,
    MANIFEST_HASH,
    load_bundle,
    manifest_hash_line,
    read_manifest,
    sha256_file,
)
from service.yt8m import SEGMENT_FRAMES

ENTRY_ARRAYS = ("embeddings", "classes", "labels", "videos", "starts")


class EntriesError(ValueError):
    """Entries that cannot become a bank (names the file and the array)."""


@dataclass(frozen=True)
class ImportResult:
    """What ``import_bank`` wrote: the new bundle, its version, and the bank's counts."""

    out: Path
    version: str
    entries: int
    positives: int
    negatives: int
    dim: int


def read_entries(path: Path, *, num_classes: int, dim: int) -> dict[str, np.ndarray]:
    """The checked entry arrays of ``ENTRIES.npz`` (ValueError naming the array otherwise)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [n for n in ENTRY_ARRAYS if n not in z.files]
            if missing:
                raise EntriesError(f"{path}: missing arrays {missing} (has {sorted(z.files)})")
            raw = {}
            for name in ENTRY_ARRAYS:
                try:
                    raw[name] = z[name]
                except ValueError as exc:  # an object array: pickled, refused
                    raise EntriesError(
                        f"{path}: array {name} is an object array ({exc}); save it as a plain "
                        "numeric or str array"
                    ) from None
    except EntriesError:
        raise
    except (OSError, ValueError) as exc:
        raise EntriesError(f"{path}: not a readable .npz file ({exc})") from None
    return check_entries(raw, str(path), num_classes=num_classes, dim=dim)


def check_entries(
    raw: dict[str, np.ndarray], where: str, *, num_classes: int, dim: int
) -> dict[str, np.ndarray]:
    """Check dtypes, shapes and values; returns the arrays in their bank dtypes."""

    def fail(name: str, msg: str) -> EntriesError:
        return EntriesError(f"{where}: array {name} {msg}")

    emb = raw["embeddings"]
    if emb.dtype.kind != "f" or emb.ndim != 2:
        raise fail("embeddings", f"must be float [N, D], got {emb.dtype} {list(emb.shape)}")
    n = int(emb.shape[0])
    if emb.shape[1] != dim:
        raise fail("embeddings", f"has D={emb.shape[1]}, the bundle's embeddings have D={dim}")
    if not np.isfinite(emb).all():
        raise fail("embeddings", "holds NaN or infinite values")
    kinds = {"classes": "iu", "labels": "iub", "videos": "U", "starts": "iu"}
    for name, kind in kinds.items():
        a = raw[name]
        if a.dtype.kind not in kind or a.shape != (n,):
            want = "str" if kind == "U" else "int"
            raise fail(name, f"must be {want} [{n}], got {a.dtype} {list(a.shape)}")
    classes = raw["classes"].astype(np.int64)
    if n and (classes.min() < 0 or classes.max() >= num_classes):
        bad = classes[(classes < 0) | (classes >= num_classes)][0]
        raise fail("classes", f"holds id {int(bad)}, not in the vocabulary [0, {num_classes})")
    labels = raw["labels"].astype(np.int64)
    if n and not np.isin(labels, (0, 1)).all():
        raise fail("labels", f"must be 1 or 0, got {int(labels[~np.isin(labels, (0, 1))][0])}")
    starts = raw["starts"].astype(np.int64)
    if n and ((starts < 0).any() or (starts % SEGMENT_FRAMES).any()):
        bad = starts[(starts < 0) | (starts % SEGMENT_FRAMES != 0)][0]
        raise fail("starts", f"holds {int(bad)}: starts are frames >= 0, multiples of 5")
    videos = raw["videos"]
    if n and (np.char.str_len(videos) == 0).any():
        raise fail("videos", "holds an empty video id")
    _check_unique(classes, videos, starts, where)
    return {
        "embeddings": emb.astype(np.float32, copy=False),
        "classes": classes,
        "labels": labels.astype(np.int8),
        "videos": videos,
        "starts": starts,
    }


def _check_unique(
    classes: npt.NDArray[np.int64], videos: np.ndarray, starts: np.ndarray, where: str
) -> None:
    """Each (class, video, start) once; the error names the first repeated entry."""
    seen: set[tuple[int, str, int]] = set()
    for i, key in enumerate(zip(classes.tolist(), videos.tolist(), starts.tolist(), strict=True)):
        if key in seen:
            raise EntriesError(
                f"{where}: arrays classes/videos/starts: entry {i} repeats class {key[0]}, video "
                f"{key[1]!r}, start {key[2]} (each labelled segment once)"
            )
        seen.add(key)


def import_bank(bundle: Path, entries: Path, out: Path) -> ImportResult:
    """Write ``out``: ``bundle`` with its bank replaced by ``entries`` (see the module doc)."""
    bundle, entries, out = Path(bundle), Path(entries), Path(out)
    src = load_bundle(bundle, verify=True)
    dim = int(src.manifest.candidate.get("embedding_dim", src.bank.dim))
    arrays = read_entries(entries, num_classes=src.num_classes, dim=dim)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists and is not empty (choose a new folder)")
    bank = ClassBank.from_entries(
        arrays["embeddings"],
        arrays["classes"],
        arrays["labels"],
        arrays["videos"],
        arrays["starts"],
        num_classes=src.num_classes,
        scan_cap=src.bank.scan_cap,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        shutil.copytree(bundle, tmp, dirs_exist_ok=True)
        rel = src.manifest.bank["file"]
        bank.save(tmp / rel)
        version = _rewrite_manifest(tmp, rel, bank, entries)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    load_bundle(out, verify=True)  # verified like any bundle
    return ImportResult(
        out, version, len(bank), int(bank.pos_count.sum()), int(bank.neg_count.sum()), bank.dim
    )


def _rewrite_manifest(root: Path, bank_rel: str, bank: ClassBank, entries: Path) -> str:
    """Update the manifest's bank facts, version and every sha256; returns the new version."""
    mpath = root / MANIFEST
    manifest: dict[str, Any] = json.loads(mpath.read_text(encoding="utf-8"))
    bank_sha = sha256_file(root / bank_rel)
    old = str(manifest.get("version", "")).split("+bank.")[0] or "bundle"
    version = f"{old}+bank.{bank_sha[:12]}"
    manifest["version"] = version
    manifest["bank"] = {
        **manifest.get("bank", {}),
        "file": bank_rel,
        "entries": len(bank),
        "dim": bank.dim,
        "positives": int(bank.pos_count.sum()),
        "negatives": int(bank.neg_count.sum()),
        "imported_from": entries.name,
    }
    manifest["files"] = {rel: sha256_file(root / rel) for rel in sorted(manifest.get("files", {}))}
    manifest["files"][bank_rel] = bank_sha
    text = json.dumps(manifest, indent=2) + "\n"
    mpath.write_text(text, encoding="utf-8")
    if (root / MANIFEST_HASH).exists() or manifest.get("format_version", 1) >= 2:
        (root / MANIFEST_HASH).write_text(manifest_hash_line(mpath), encoding="ascii")
    read_manifest(root)
    return version
