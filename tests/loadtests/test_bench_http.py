"""``make bench`` at its tiny setting: every part runs against a real ``ccrl serve`` loaded by
hey, and writes ``latest.json``, the plots and the README tables. Counts and keys are asserted,
never speed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from loadtests import bench_http

RATIOS = (
    "service_vs_bare_throughput",
    "concurrency_scaling",
    "json_vs_binary_throughput",
    "bank_1m_vs_1k_feature_cost",
    "p99_over_p50_at_70pct",
)


@pytest.mark.slow
def test_bench_http_tiny_writes_results_and_tables(tiny_bundle: Path, tmp_path: Path) -> None:
    if shutil.which("hey") is None:
        pytest.fail("hey is not installed: run scripts/ensure-test-deps.sh", pytrace=False)
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- bench:summary -->\nold\n<!-- /bench:summary -->\ny\n")
    out = tmp_path / "results"
    res = bench_http.main(
        [
            "--bundle",
            str(tiny_bundle),
            "--preset",
            "tiny",
            "--out",
            str(out),
            "--readme",
            str(readme),
        ]
    )
    saved = json.loads((out / "latest.json").read_text())
    assert set(RATIOS) <= saved.keys()
    assert saved["bank_1m_vs_1k_feature_cost"] is None  # the tiny banks are 500 and 1,000 entries
    for key in RATIOS[:3] + RATIOS[4:]:
        assert saved[key] > 0, key
    loads = [*saved["http"]["b64"].values(), *saved["http"]["json"].values(), saved["tail"]]
    assert all(r["ok"] > 0 and r["errors"] == 0 for r in loads), loads
    assert [r["x"] for r in saved["curves"]["frames"]] == [30, 60]
    assert [r["x"] for r in saved["curves"]["bank"]] == [500, 1_000]
    for name in saved["plots"].values():
        assert (out / name).stat().st_size > 0
    text = readme.read_text()
    assert "old" not in text and "| service ÷ bare throughput | >= 0.85 |" in text
    assert text.startswith("x\n") and text.endswith("<!-- /bench:summary -->\ny\n")
    assert res["serving"]["workers"] == 2  # the deploy files' workers
    assert saved["bare_p99_over_p50"] >= 1.0
    assert "| the machine: bare scorer's own p99 ÷ p50, 1 thread, no HTTP | - |" in text


def test_window_p50s_takes_the_median_of_each_whole_second() -> None:
    import numpy as np

    from loadtests.hey import window_p50s

    offset = np.arange(0, 3.0, 0.01)  # 100 answers a second for 3 s (the last second not whole)
    rt = np.where(offset < 1.0, 0.010, 0.020)  # 10 ms, then 20 ms
    status = np.full(offset.size, 200)
    status[150] = 500  # a failed answer is not counted
    assert window_p50s(rt, offset, status) == pytest.approx([10.0, 20.0])
    assert window_p50s(rt, offset, np.full(offset.size, 503)) == []
