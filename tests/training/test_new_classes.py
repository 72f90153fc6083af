"""New classes from online labels: a rated class held out of the GBM and the bank, then labelled
segments added through the bank, becomes retrievable (its test segments ranked by the GBM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.features import FEATURE_NAMES
from service.tfrecord import read_videos
from training.ccrl import CandidateRunner, build_bank, rated_pairs
from training.new_classes import bank_without, labelled_order, measure_new_classes

pytestmark = pytest.mark.slow

PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0}


@pytest.fixture(scope="module")
def outputs(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A logistic generator trained on the tiny corpus, and its validate / test outputs."""
    from training.candidates import train_candidates

    out = tmp_path_factory.mktemp("gen")
    res = train_candidates(tiny_corpus, out, model="logistic", epochs=40, progress=False)
    runner = CandidateRunner(res.onnx_path, threads=1)
    val = runner.run_all(read_videos([tiny_corpus / "validate"]), progress=False)
    test = runner.run_all(read_videos([tiny_corpus / "test"]), progress=False)
    rated = sorted({int(c) for o in val for c in o.rated_class.tolist()})
    return {"val": val, "test": test, "bank": build_bank(val, res.num_classes), "rated": rated}


def test_held_out_classes_are_out_of_the_bank_and_the_training(outputs: dict[str, Any]) -> None:
    bank = outputs["bank"]
    c = outputs["rated"][0]
    base = bank_without(bank, [c])
    assert base.pos_count[c] == base.neg_count[c] == 0
    assert len(base) == len(bank) - int(bank.pos_count[c] + bank.neg_count[c])
    order = labelled_order(bank, c)
    assert bank.emb_label[order[0]] == 1 and set(bank.emb_class[order].tolist()) == {c}
    pairs = rated_pairs(outputs["val"], base, progress=False)
    x = pairs.x[pairs.class_ids == c]
    assert np.isnan(x[:, FEATURE_NAMES.index("sim_pos_mean")]).all()  # no labelled segment of c


def test_a_held_out_class_becomes_retrievable_from_its_labels(outputs: dict[str, Any]) -> None:
    res = measure_new_classes(
        outputs["val"],
        outputs["test"],
        outputs["bank"],
        outputs["rated"],
        PARAMS,
        20,
        sizes=(0, 2, 4),
    )
    held = res["held_classes"]
    assert held and set(held) <= set(outputs["rated"])
    assert res["sizes"] == [0, 2, 4] and set(res["held_ap"]) == {"0", "2", "4"}
    assert res["trained_classes"] == len(outputs["rated"]) - len(held)
    for aps in res["held_ap"].values():
        assert set(aps) <= {str(c) for c in held}
        assert all(0.0 <= ap <= 1.0 for ap in aps.values())
    # with a few labelled segments the class is ranked well above chance on test/
    chance = _positive_share(outputs["test"], held)
    assert res["held_mean_ap"]["4"] > chance
    assert 0.0 < res["trained_mean_ap"] <= 1.0


def _positive_share(outputs: list[Any], classes: list[int]) -> float:
    """Share of positives among the test ratings of ``classes`` (the AP of a random order)."""
    labels = [
        y
        for o in outputs
        for c, y in zip(o.rated_class.tolist(), o.rated_label.tolist(), strict=True)
        if c in classes
    ]
    return float(np.mean(labels))
