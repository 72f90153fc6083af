"""``ccrl bank import``: a bundle whose bank is the given entries, checked like any bundle, with a
new version (so Redis namespaces never mix) and clear errors naming the array that is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.bank_import import EntriesError, import_bank
from service.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[2]


def shape(bundle: Path) -> tuple[int, int]:
    m = json.loads((bundle / "manifest.json").read_text())
    return len(m["classes"]), int(m["candidate"]["embedding_dim"])


def entries(bundle: Path, n: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    c, d = shape(bundle)
    rng = np.random.default_rng(seed)
    return {
        "embeddings": rng.normal(size=(n, d)).astype(np.float32),
        "classes": rng.integers(0, c, n).astype(np.int64),
        "labels": rng.integers(0, 2, n).astype(np.int8),
        "videos": np.asarray([f"mine{i // 5}" for i in range(n)]),
        "starts": ((np.arange(n) % 5) * 5).astype(np.int64),
    }


def ccrl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "ccrl", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_ccrl_bank_import_writes_a_verified_bundle_with_a_new_version(
    service_bundle: Path, tmp_path: Path
) -> None:
    from service.api.app import bundle_namespace

    arrays = entries(service_bundle)
    np.savez(tmp_path / "entries.npz", **arrays)
    before = (service_bundle / "manifest.json").read_text()
    out = tmp_path / "mine"
    r = ccrl(
        "bank", "import", str(service_bundle), str(tmp_path / "entries.npz"), "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    assert "bank of 50 entries" in r.stdout
    new, old = load_bundle(out), load_bundle(service_bundle)  # sha256 of every file checked
    assert (service_bundle / "manifest.json").read_text() == before  # the source is untouched
    assert len(new.bank) == 50
    assert (
        new.bank.pos_count.tolist()
        == np.bincount(arrays["classes"][arrays["labels"] == 1], minlength=new.num_classes).tolist()
    )
    assert new.manifest.version != old.manifest.version
    assert new.manifest.version.startswith(old.manifest.version + "+bank.")
    assert bundle_namespace(new) != bundle_namespace(old)
    assert (
        new.manifest.bank["entries"] == 50 and new.manifest.bank["imported_from"] == "entries.npz"
    )
    got = sorted(zip(new.bank.emb_class.tolist(), new.bank.emb_video.tolist(), strict=True))
    want = sorted(zip(arrays["classes"].tolist(), arrays["videos"].tolist(), strict=True))
    assert got == want
    again = ccrl(
        "bank", "import", str(service_bundle), str(tmp_path / "entries.npz"), "--out", str(out)
    )
    assert again.returncode == 1 and "already exists" in again.stderr


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda a, c, d: a.pop("labels"), ("missing arrays", "labels")),
        (
            lambda a, c, d: a.update(embeddings=a["embeddings"][:, :-1]),
            ("array embeddings", "the bundle's embeddings have D={d}"),
        ),
        (lambda a, c, d: a["classes"].__setitem__(3, c), ("array classes", "id {c}", "vocabulary")),
        (lambda a, c, d: a["labels"].__setitem__(0, 2), ("array labels", "1 or 0")),
        (lambda a, c, d: a["starts"].__setitem__(1, 7), ("array starts", "7", "multiples of 5")),
        (lambda a, c, d: a.update(starts=a["starts"][:-1]), ("array starts", "int [50]")),
        (lambda a, c, d: a["embeddings"].__setitem__((0, 0), np.nan), ("array embeddings", "NaN")),
        (lambda a, c, d: a.update(videos=a["videos"].astype(object)), ("array videos", "object")),
        (
            lambda a, c, d: (
                a["videos"].__setitem__(5, a["videos"][0]),
                a["classes"].__setitem__(5, a["classes"][0]),
            ),
            ("repeats class", "entry 5"),
        ),
    ],
)
def test_bad_entries_are_refused_naming_the_array(
    service_bundle: Path, tmp_path: Path, change: Any, words: tuple[str, ...]
) -> None:
    c, d = shape(service_bundle)
    arrays = entries(service_bundle)
    change(arrays, c, d)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(EntriesError) as exc:
        import_bank(service_bundle, path, tmp_path / "out")
    for w in words:
        w = w.replace("{c}", str(c)).replace("{d}", str(d))
        assert w in str(exc.value), (w, str(exc.value))
    assert str(path) in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_the_imported_bank_is_served(
    service_bundle: Path, tmp_path: Path, make_settings: Any
) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    arrays = entries(service_bundle, n=30, seed=3)
    np.savez(tmp_path / "e.npz", **arrays)
    out = import_bank(service_bundle, tmp_path / "e.npz", tmp_path / "served").out
    with TestClient(create_app(make_settings(bundle=out))) as client:
        classes = client.get("/classes").json()["classes"]
        assert sum(x["bank"]["positive"] + x["bank"]["negative"] for x in classes) == 30
        assert (
            client.get("/readyz")
            .json()["model_version"]
            .endswith(json.loads((out / "manifest.json").read_text())["version"][-12:])
        )
