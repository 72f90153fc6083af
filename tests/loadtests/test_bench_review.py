"""The evidence and review benchmark runs end to end at a tiny size (counts, never speed)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_review_prints_every_phase(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loadtests.bench_review import main
    from tests.service.conftest import _build_logistic_bundle

    bundle = _build_logistic_bundle(tiny_corpus, tmp_path / "sim")
    main(["--bundle", str(bundle), "--data", str(tiny_corpus / "test"), "--videos", "3"])
    out = capsys.readouterr().out
    for phase in ("localize ", "localize+explain", "index ", "index+keep", "rescore", "queue "):
        assert phase in out, phase
    assert "videos 3," in out and "kept segments)" in out
