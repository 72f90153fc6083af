"""The report's active-learning simulation: the same seed bank for every strategy, labels from
one half of a class's rated videos and AP on the other, re-scoring with the service's own bank
columns; deterministic, cheap, and written to the report with its plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.bundle import load_bundle
from service.tfrecord import read_videos
from training.active_learning import STRATEGIES, SimConfig, choose_classes, simulate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sim_bundle(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service tests' sim bundle (logistic candidates, mean-frame embeddings): its GBM leans
    on the bank's similarity columns, which the simulation moves."""
    from tests.service.conftest import _build_logistic_bundle

    return _build_logistic_bundle(tiny_corpus, tmp_path_factory.mktemp("al") / "sim")


SMALL = SimConfig(rounds=2, per_round=2, seed_positives=1, seed_negatives=1, random_repeats=2)


def _rated(corpus: Path) -> list:
    return [v for v in read_videos([corpus / "test"]) if len(v.segment_labels)]


def test_simulation_curves_start_together_and_are_reproducible(
    sim_bundle: Path, tiny_corpus: Path
) -> None:
    b = load_bundle(sim_bundle)
    videos = _rated(tiny_corpus)
    al = simulate(b, videos, SMALL)
    assert al["labels_added"] == [0, 2, 4] and al["classes"]
    assert set(al["mean_ap"]) == set(STRATEGIES)
    for c in al["classes"]:
        curves = al["per_class"][str(c)]
        assert len({curves[s][0] for s in STRATEGIES}) == 1  # the same seed bank for all
        assert all(0.0 <= ap <= 1.0 for s in STRATEGIES for ap in curves[s])
        sizes = al["sizes"][str(c)]
        assert sizes["pool_pairs"] >= 1 and sizes["eval_pairs"] >= 1
    assert al["verdict"].startswith("uncertain ") and "on average over the rounds" in al["verdict"]
    again = simulate(b, videos, SMALL)
    assert again["per_class"] == al["per_class"]


def test_simulated_scores_are_the_service_scores_for_the_same_bank(
    sim_bundle: Path, tiny_corpus: Path
) -> None:
    from service.bank import ClassBank
    from service.bundle import predict_pairs
    from service.features import build_pair_features
    from training.active_learning import _add, _class_sim, _scores
    from training.ccrl import CandidateRunner

    b = load_bundle(sim_bundle)
    videos = _rated(tiny_corpus)
    c = choose_classes(videos, SMALL)[0]
    runner = CandidateRunner(b.candidate_path)
    outs = [runner(v) for v in videos if c in v.segment_labels.tolist()]
    sims = (_class_sim(c, outs, b.bank, b.max_sim, np.random.default_rng(s)) for s in range(20))
    sim = next(s for s in sims if s is not None)
    bank = _add(ClassBank.empty(b.num_classes, b.bank.dim), sim, sim.pool[:2])
    got = _scores(b, sim, bank)
    for o, scores in zip(sim.outs, got, strict=True):
        pm = build_pair_features(
            o.video_probs, o.segment_probs, o.segment_embeddings, [c], bank, o.id, max_sim=b.max_sim
        )
        np.testing.assert_allclose(scores, predict_pairs(b.booster, pm), atol=1e-6)


def test_the_section_and_its_plot(sim_bundle: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    from training.active_learning import markdown, plot

    al = simulate(load_bundle(sim_bundle), _rated(tiny_corpus), SMALL)
    png = plot(al, tmp_path / "active_learning.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = "\n".join(markdown(al))
    assert "## Active learning" in md and "| labels added |" in md and "Result: uncertain" in md
    assert "![active learning](active_learning.png)" in md
    empty = simulate(load_bundle(sim_bundle), [], SMALL)
    assert empty["mean_ap"] == {} and "not simulated" in "\n".join(markdown(empty))
