"""The README's curl lines, run as written (bash, curl) against a real ``ccrl serve`` laid out as
``make serve`` leaves it: ``data/demo/example-request.json`` and the demo's token file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _readme_block() -> str:
    """The bash block that follows "Once it is up:" in the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"Once it is up:\s*```bash\n(.*?)```", text, re.S)
    assert m, "README: no bash block after 'Once it is up:'"
    return m.group(1)


@pytest.mark.slow
def test_the_readme_curl_lines_work_as_written(
    sim_bundle: Path, service_corpus: Path, tmp_path: Path, ccrl_serve: Any
) -> None:
    from ccrl.demo import demo_token
    from training.demo import write_example_request

    if shutil.which("curl") is None:
        pytest.fail("curl is not installed (the README's examples use it)", pytrace=False)
    demo = tmp_path / "data" / "demo"
    demo.mkdir(parents=True)
    write_example_request(service_corpus, demo / "example-request.json")
    token = demo_token(demo).read_text().strip()
    with ccrl_serve(sim_bundle, tmp_path / "serve.log", CCRL_API_TOKEN=token) as srv:
        block = _readme_block().replace("127.0.0.1:8000", f"127.0.0.1:{srv.port}")
        script = "set -euo pipefail\n" + block.replace("\ncurl ", "\necho; curl ")
        env = {k: v for k, v in os.environ.items() if k != "CCRL_API_TOKEN"}
        proc = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    localized, classes, top, review = answers
    assert localized["indexed"] is True and localized["classes"]
    assert len(classes["classes"]) > 1
    assert top["total"] > 0 and top["segments"][0]["video_id"] == localized["video_id"]
    assert top["class_id"] == localized["classes"][0]["class_id"] == review["class_id"]
    assert review["strategy"] == "uncertain" and review["segments"]
    assert all(s["kept"] for s in review["segments"])
