"""``ab_serving tail`` on the tiny bundle: the bare line and one row per offered share come out of
a real 2-worker ``ccrl serve`` loaded by hey. Rows and their shape are asserted, never speed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from loadtests import ab_serving


@pytest.mark.slow
def test_tail_prints_the_bare_spread_and_a_row_per_share(
    tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("hey") is None:
        pytest.fail("hey is not installed: run scripts/ensure-test-deps.sh", pytrace=False)
    ab_serving.main(["tail", "--bundle", str(tiny_bundle), "--rounds", "1", "--seconds", "0.6"])
    out = capsys.readouterr().out
    assert re.search(r"bare scorer, 1 thread: p50 [\d.]+ ms, p99 ÷ p50 [\d.]+", out), out
    rows = [line.split() for line in out.splitlines() if line.startswith("tuned, 2 workers")]
    assert [float(r[3]) for r in rows] == list(ab_serving.TAIL_FRACTIONS), out
    for r in rows:  # rate, p50, p99, p99/p50
        rate, p50, p99, ratio = (float(x) for x in r[4:8])
        assert rate > 0 and 0 < p50 <= p99 and ratio == pytest.approx(p99 / p50, abs=0.01)
