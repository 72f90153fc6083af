"""``make soak`` at a tiny setting: a real ``ccrl serve`` under a steady load for 10 seconds, its
report (table, JSON, PNG), and the rule that decides the exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_a_ten_second_soak_reports_windows_and_passes(service_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "soak"
    args = ["--bundle", str(service_bundle), "--seconds", "10", "--window-s", "2"]
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.soak", *args, "--concurrency", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "soak.json").read_text())
    windows = report["windows"]
    assert len(windows) == 5 and report["problems"] == []
    assert all(w["errors"] == 0 and w["requests"] > 0 and w["rss_mb"] > 10 for w in windows)
    assert all(w["p50_ms"] <= w["p99_ms"] for w in windows)
    table = (out / "soak.md").read_text()
    assert table.startswith(
        "| window end (s) | requests | errors | p50 (ms) | p99 (ms) | RSS (MiB) |"
    )
    assert table in proc.stdout
    assert (out / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_soak_fails_on_any_error_or_on_memory_growth() -> None:
    from loadtests.soak import Window, verdict

    def w(errors: int = 0, rss: float = 200.0) -> Window:
        return Window(1.0, 10, errors, 5.0, 9.0, rss)

    assert verdict([w(), w(rss=230.0)], max_growth_mb=64) == []
    assert verdict([w(), w(errors=1)], max_growth_mb=64) == ["1 failed request(s)"]
    (growth,) = verdict([w(), w(rss=300.0)], max_growth_mb=64)
    assert "grew by 100.0 MiB" in growth
    assert verdict([], max_growth_mb=64) == ["no request was answered"]
