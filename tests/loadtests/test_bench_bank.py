"""The label-bank benchmark runs end to end at a tiny setting (shape bundle, ``ccrl bank import``,
two ``ccrl serve`` replicas on a private Redis). Counts and shapes are asserted, never speed."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from loadtests.bench_bank import ROWS, run  # noqa: E402


@pytest.mark.slow
@pytest.mark.redis
def test_bench_bank_measures_every_phase_at_both_sizes(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the shape bundle is exported with torch")
    out = tmp_path / "bench_bank.json"
    result = run(
        [
            *("--entries", "300", "--small", "100", "--classes", "12"),
            *("--writes", "4", "--localize-s", "1", "--json-out", str(out)),
        ]
    )
    assert json.loads(out.read_text())["big"]["entries"] == 300
    for size, n in (("big", 300), ("small", 100)):
        r = result[size]
        assert (r["entries"], r["classes"], r["dim"]) == (n, 12, 1152)
        for key, _ in ROWS:
            assert math.isfinite(r[key]) and r[key] >= 0, (size, key, r[key])
        assert r["burst_writes"] >= 1 and r["burst_write_errors"] == 0  # writes went on meanwhile
    assert "| write p99 through Redis, store (ms) |" in result["table"]
