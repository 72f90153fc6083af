"""Fixtures of the benchmark tests: ``tiny_bundle`` (session), a tiny real bundle trained once on
a synthetic corpus of 80 videos (12 classes, 30..60 frames) by ``training.pipeline.run_train``."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pipeline = pytest.importorskip(
        "training.pipeline", reason="training.pipeline (run_train) is not there yet"
    )
    from training.synth import run_synth

    work = tmp_path_factory.mktemp("bench-e2e")
    run_synth(
        work / "data",
        videos=80,
        classes=12,
        seed=5,
        shards=1,
        min_frames=30,
        max_frames=60,
        progress=False,
    )
    pipeline.run_train(
        work / "data",
        work / "bundle",
        preset="small",
        seed=0,
        threads=1,
        candidate_epochs=1,
        convnet_pretrain_epochs=0,
        progress=False,
    )
    assert (work / "bundle" / "manifest.json").is_file()
    return work / "bundle"
