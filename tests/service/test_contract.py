"""The OpenAPI document as the server enforces it, checked three ways: its own structure (every
``$ref`` resolves, the configured bounds), its examples (the server accepts them), and a bounded
schemathesis run against a real ``ccrl serve`` with and without the token, which fails on any 5xx,
any answer that violates the document, and any schema-valid request the server rejects."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.openapi import check_refs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_PER_OPERATION = 50


def _doc(client: Any) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


def test_every_ref_resolves_and_the_bounds_are_the_configured_ones(make_settings: Any) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    settings = make_settings(min_frames=10, max_frames=200, max_page=250, index_cap=5000)
    with TestClient(create_app(settings)) as c:
        doc = _doc(c)
        num_classes = len(c.get("/classes").json()["classes"])
    check_refs(doc)  # raises on the first that does not resolve
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc))
    assert "LabelSegment" in refs and set(refs) <= set(doc["components"]["schemas"])
    assert "x-bound" not in json.dumps(doc) and "$defs" not in json.dumps(doc)
    top = doc["paths"]["/classes/{class_id}/top-segments"]["get"]
    params = {p["name"]: p["schema"] for p in top["parameters"]}
    assert params["limit"]["maximum"] == 250 and params["offset"]["maximum"] == 4999
    assert (params["class_id"]["minimum"], params["class_id"]["maximum"]) == (0, num_classes - 1)
    body = doc["paths"]["/localize"]["post"]["requestBody"]["content"]["application/json"]
    rgb = body["schema"]["properties"]["rgb"]["anyOf"]
    assert (rgb[0]["minItems"], rgb[0]["maxItems"]) == (10, 200)
    assert rgb[0]["items"]["minItems"] == rgb[0]["items"]["maxItems"] == 1024
    assert rgb[0]["items"]["items"] == {"type": "number", "minimum": -2.05, "maximum": 2.05}
    shape = rgb[1]["properties"]["shape"]["prefixItems"]
    assert (shape[0]["minimum"], shape[0]["maximum"], shape[1]["const"]) == (10, 200, 1024)
    classes = body["schema"]["properties"]["classes"]["anyOf"][0]["items"]
    assert classes["maximum"] == num_classes - 1
    segment = doc["components"]["schemas"]["LabelSegment"]["properties"]
    assert segment["start"]["maximum"] == 195 and segment["start"]["multipleOf"] == 5
    assert segment["label"]["enum"] == [0, 1]
    for path, method, status in (
        ("/localize", "post", "409"),
        ("/localize", "post", "415"),
        ("/classes/{class_id}/labels", "post", "401"),
        ("/healthz", "get", "431"),
    ):
        assert status in doc["paths"][path][method]["responses"], (path, status)
    labels = doc["paths"]["/classes/{class_id}/labels"]["post"]
    assert labels["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_documented_examples_are_accepted(client: Any, api_token: str) -> None:
    doc = _doc(client)
    auth = {"Authorization": f"Bearer {api_token}"}
    for path, status in (("/localize", 200), ("/classes/{class_id}/labels", 201)):
        media = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        for example in media["examples"].values():
            r = client.post(path.replace("{class_id}", "1"), json=example["value"], headers=auth)
            assert r.status_code == status, r.text


def _schemathesis(url: str, tmp: Path, *, token: str | None, expected: list[str]) -> str:
    """One bounded schemathesis run; returns its output (the test asserts its exit code)."""
    exe = Path(sys.executable).parent / "schemathesis"
    if not exe.exists():
        exe = Path(shutil.which("schemathesis") or "schemathesis")
    config = tmp / "schemathesis.toml"
    config.write_text(
        "[checks.positive_data_acceptance]\n"
        f"expected-statuses = {json.dumps(expected)}\n"
        '[generation]\ndatabase = "none"\n[cache]\nenabled = false\n'
        # a schema-valid removal of a label the bank does not have is a documented 404
        '[[operations]]\ninclude-path = "/classes/{class_id}/labels"\ninclude-method = "DELETE"\n'
        "[operations.checks.positive_data_acceptance]\n"
        f"expected-statuses = {json.dumps([*expected, '404'])}\n"
    )
    args = [
        *(str(exe), "--config-file", str(config), "run", f"{url}/openapi.json"),
        *("--checks", "all", "--max-examples", str(EXAMPLES_PER_OPERATION), "--workers", "1"),
        *("--seed", "13", "--phases", "examples,coverage,fuzzing", "--no-color"),
        *("--request-timeout", "60", "--suppress-health-check", "too_slow"),
    ]
    if token is not None:
        args += ["-H", f"Authorization: Bearer {token}"]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.service.fuzz_hooks",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        args, cwd=tmp, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


@pytest.mark.slow
def test_schemathesis_finds_nothing_with_and_without_the_token(
    sim_bundle: Path, tmp_path: Path, ccrl_serve: Any, api_token: str
) -> None:
    """Positive cases must be accepted (2xx; 409 when a generated video id repeats; 401 without
    the token, for label writes and indexing), negative ones refused with a documented 4xx, and
    every answer must match the document. The stateful phase is left out: its links copy values
    between requests (a start from one video's answer into another video's labels) that no
    schema can tie to the frames they must fit."""
    with ccrl_serve(sim_bundle, tmp_path / "serve.log") as srv:
        runs = {
            "token": _schemathesis(srv.url, tmp_path, token=api_token, expected=["2xx", "409"]),
            "anonymous": _schemathesis(srv.url, tmp_path, token=None, expected=["2xx", "401"]),
        }
        assert httpx.get(f"{srv.url}/healthz", timeout=10).status_code == 200
        log = srv.log.read_text()
    for name, out in runs.items():
        counts = re.search(r"(\d+) generated, (\d+) passed", out)
        assert counts, (name, out[-2000:])
        assert int(counts.group(1)) >= 6 * EXAMPLES_PER_OPERATION, (name, counts.group(0))
        assert int(counts.group(1)) == int(counts.group(2)), (name, counts.group(0))
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]
