"""Bundle round trip (writer -> reader), sha256 tamper detection, and predict_pairs parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import xgboost as xgb
from onnx import TensorProto, helper

from service.bank import ClassBank
from service.bundle import BundleError, load_bundle, predict_pairs
from service.features import FEATURE_NAMES, FEATURE_TYPES, build_pair_features
from training.bundle_writer import finalize_manifest, write_bundle

C, D = 6, 8


def _tiny_onnx(path: Path) -> Path:
    """A real (trivial) ONNX graph standing in for the candidate model file."""
    x = helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["F", 1152])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["F", 1152])
    graph = helper.make_graph([helper.make_node("Identity", ["frames"], ["out"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def _pairs_and_booster(rng: np.random.Generator) -> tuple[ClassBank, np.ndarray, xgb.Booster]:
    bank = ClassBank.from_entries(
        rng.normal(size=(40, D)),
        rng.integers(0, C, 40),
        rng.integers(0, 2, 40),
        [f"v{i % 9}" for i in range(40)],
        np.arange(40, dtype=np.int64) * 5,  # one entry per (class, video, start)
        num_classes=C,
    )
    rows, labels = [], []
    for v in range(12):
        vp, sp = rng.random(C), rng.random((7, C))
        pm = build_pair_features(vp, sp, rng.normal(size=(7, D)), np.arange(C), bank, f"v{v}")
        rows.append(pm.x)
        labels.append((sp[pm.segment_index, pm.class_ids] > 0.5).astype(np.float32))
    x = np.concatenate(rows)
    dm = xgb.DMatrix(
        x,
        label=np.concatenate(labels),
        feature_names=list(FEATURE_NAMES),
        feature_types=list(FEATURE_TYPES),
        enable_categorical=True,
    )
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 3, "nthread": 1}
    return bank, x, xgb.train(params, dm, num_boost_round=8)


@pytest.fixture()
def bundle_dir(tmp_path: Path) -> tuple[Path, np.ndarray, xgb.Booster]:
    rng = np.random.default_rng(0)
    bank, x, booster = _pairs_and_booster(rng)
    out = tmp_path / "bundle"
    write_bundle(
        out,
        name="t",
        candidate_onnx=_tiny_onnx(tmp_path / "c.onnx"),
        candidate_meta={"input": "frames", "num_classes": C, "embedding_dim": D, "model": "lstm"},
        booster=booster,
        ccrl_params={"max_sim": True},
        bank=bank,
        classes=[{"id": c, "name": f"c{c}", "vertical": "V"} for c in range(C)],
        rated_classes=[1, 2, 3],
        baselines={"lstm": _tiny_onnx(tmp_path / "b.onnx")},
        config={"cg_top_k": 4},
    )
    (out / "report").mkdir()
    (out / "report" / "report.md").write_text("# report\n")
    finalize_manifest(out, metrics={"ccrl": {"cg": 0.5}})
    return out, x, booster


def test_round_trip_and_predict_parity(bundle_dir: tuple[Path, np.ndarray, xgb.Booster]) -> None:
    out, x, booster = bundle_dir
    b = load_bundle(out, nthread=1)
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["files"]) == {
        "candidate.onnx",
        "ccrl.ubj",
        "bank.npz",
        "baseline_lstm.onnx",
        "report/report.md",
    }
    assert b.feature_names == FEATURE_NAMES
    assert b.manifest.metrics == {"ccrl": {"cg": 0.5}}
    assert b.rated_classes.tolist() == [1, 2, 3] and b.class_names[2] == "c2"
    assert b.cg_top_k == 4 and b.max_sim
    assert b.baseline_paths["lstm"].name == "baseline_lstm.onnx"
    assert len(b.bank) == 40 and b.bank.dim == D
    assert {"numpy", "xgboost", "onnxruntime"} <= set(b.manifest.versions)
    # the serving helper (inplace_predict on float32) equals the training DMatrix predict exactly
    dm = xgb.DMatrix(
        x,
        feature_names=list(FEATURE_NAMES),
        feature_types=list(FEATURE_TYPES),
        enable_categorical=True,
    )
    ref = booster.predict(dm)
    np.testing.assert_array_equal(predict_pairs(b.booster, x), ref)
    np.testing.assert_array_equal(predict_pairs(booster, x), ref)
    assert predict_pairs(b.booster, x[:0]).shape == (0,)
    with pytest.raises(ValueError, match="pair matrix must be"):
        predict_pairs(b.booster, x[:, :3])


@pytest.mark.parametrize("victim", ["bank.npz", "ccrl.ubj", "report/report.md"])
def test_tampered_file_is_named(
    bundle_dir: tuple[Path, np.ndarray, xgb.Booster], victim: str
) -> None:
    out, _, _ = bundle_dir
    fp = out / victim
    data = bytearray(fp.read_bytes())
    data[len(data) // 2] ^= 0xFF
    fp.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=victim.split("/")[-1]):
        load_bundle(out)
    if victim == "report/report.md":  # the models themselves are intact
        assert load_bundle(out, verify=False).bank is not None


def test_missing_file_and_bad_manifest(bundle_dir: tuple[Path, np.ndarray, xgb.Booster]) -> None:
    out, _, _ = bundle_dir
    (out / "baseline_lstm.onnx").unlink()
    with pytest.raises(BundleError, match=r"baseline_lstm\.onnx.*missing"):
        load_bundle(out)
    m = json.loads((out / "manifest.json").read_text())
    m["ccrl"]["feature_names"] = m["ccrl"]["feature_names"][::-1]
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="feature_names"):
        load_bundle(out, verify=False)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest"):
        load_bundle(out)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(out / "nope")


def test_an_edited_manifest_is_refused(bundle_dir: tuple[Path, np.ndarray, xgb.Booster]) -> None:
    out, _, _ = bundle_dir
    line = (out / "manifest.sha256").read_text()
    assert line.endswith("  manifest.json\n") and len(line.split()[0]) == 64  # sha256sum -c format
    m = json.loads((out / "manifest.json").read_text())
    assert m["format_version"] == 2 and "manifest.sha256" not in m["files"]
    m["version"] = "99990101000000"  # every listed file is intact: only the manifest changed
    (out / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    with pytest.raises(BundleError, match=r"manifest\.json: sha256 mismatch.*manifest was edited"):
        load_bundle(out)
    (out / "manifest.sha256").unlink()
    with pytest.raises(BundleError, match=r"manifest\.sha256: missing"):
        load_bundle(out)
    assert load_bundle(out, verify=False).manifest.version == "99990101000000"


def test_a_format_1_bundle_without_the_manifest_hash_keeps_its_other_checks(
    bundle_dir: tuple[Path, np.ndarray, xgb.Booster], caplog: pytest.LogCaptureFixture
) -> None:
    out, _, _ = bundle_dir
    (out / "manifest.sha256").unlink()
    m = json.loads((out / "manifest.json").read_text())
    m["format_version"] = 1  # written before manifest.sha256 existed
    (out / "manifest.json").write_text(json.dumps(m))
    assert load_bundle(out).manifest.format_version == 1
    assert "the manifest itself is not verified" in caplog.text
    good = (out / "bank.npz").read_bytes()
    (out / "bank.npz").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(BundleError, match=r"bank\.npz: sha256 mismatch"):
        load_bundle(out)
    (out / "bank.npz").write_bytes(good)
    finalize_manifest(out)  # re-hashing (ccrl evaluate) writes the manifest's hash too
    assert (out / "manifest.sha256").is_file() and load_bundle(out).bank is not None
