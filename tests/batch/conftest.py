"""Fixtures of the batch tests: a tiny real bundle (logistic candidates, real ONNX and XGBoost)
built once per session on the shared ``tiny_corpus``, and the corpus splits to index."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def index_bundle(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle of the service tests' kind (their builder, so there is one copy of it)."""
    from tests.service.conftest import _build_logistic_bundle

    return _build_logistic_bundle(tiny_corpus, tmp_path_factory.mktemp("batch-models") / "sim")


@pytest.fixture(scope="session")
def index_data(tiny_corpus: Path) -> list[Path]:
    """Two splits (48 videos in 4 shards) to index."""
    return [tiny_corpus / "test", tiny_corpus / "validate"]
