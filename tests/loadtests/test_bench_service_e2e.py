"""End to end: the service benchmark and the Locust scenarios against a real ``ccrl serve``.

A tiny real bundle is trained once (``tiny_bundle`` in this folder's conftest); the benchmark
then runs every phase with a handful of requests, and Locust runs headless for a few
seconds against a server started the benchmark's way. Counts and errors are asserted, never speed.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from loadtests.bench_service import run, running_server  # noqa: E402

TOKEN = "bench-e2e-token-0123"


@pytest.mark.slow
def test_bench_service_measures_bare_and_both_http_encodings(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    results = run(
        [
            *("--bundle", str(tiny_bundle), "--requests", "6", "--concurrency", "2"),
            *("--videos", "2", "--min-frames", "60", "--max-frames", "90"),
            *("--max-seconds", "60", "--json-out", str(out)),
        ]
    )
    assert [r.mode for r in results] == ["bare (in-process)", "http b64", "http json"]
    for r in results:
        assert r.requests == 6 and r.errors == 0, r
        assert r.videos_per_s > 0
        assert 0 < r.p50_ms <= r.p95_ms <= r.p99_ms
    assert results[0].ratio == pytest.approx(1.0)
    assert results[2].mean_body_bytes > 4 * results[1].mean_body_bytes  # JSON floats vs b64 uint8
    saved = json.loads(out.read_text())
    assert [r["mode"] for r in saved] == [r.mode for r in results]


@pytest.mark.slow
def test_locust_scenarios_run_clean_against_a_real_server(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    locust = Path(sys.executable).parent / "locust"
    if not locust.exists():
        pytest.skip("locust is not installed (the `load` extra)")
    with running_server(
        tiny_bundle, threads=1, scoring_slots=1, extra_env={"CCRL_API_TOKEN": TOKEN}
    ) as url:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "CCRL_API_TOKEN": TOKEN,
            "LOADTEST_VIDEOS": "3",
            "LOADTEST_INDEX_FRACTION": "1.0",
        }
        proc = subprocess.run(
            [
                *(str(locust), "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless"),
                *("-u", "2", "-r", "2", "-t", "8s", "--host", url, "--only-summary"),
                *("--csv", str(tmp_path / "run"), "--exit-code-on-error", "1"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=env,
        )
        output = proc.stdout + proc.stderr
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    with (tmp_path / "run_stats.csv").open() as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    assert proc.returncode == 0, output[-3000:]
    assert int(rows["Aggregated"]["Failure Count"]) == 0, output[-3000:]
    assert int(rows["/localize [b64]"]["Request Count"]) > 0
    assert int(rows["/classes"]["Request Count"]) == 2  # one per user at start
    # Every /localize carried a video_id, so the service indexed segments.
    indexed = re.search(r"^ccrl_indexed_segments_total (\S+)$", metrics, re.MULTILINE)
    assert indexed and float(indexed.group(1)) > 0, metrics[:2000]
