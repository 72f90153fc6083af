"""``ccrl serve`` as a real server process, checked from outside over HTTP; bad bundles refused."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.yt8m import Video

TOKEN = "serve-test-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ccrl() -> list[str]:
    return [sys.executable, "-m", "ccrl"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CCRL_BUNDLE"}}
    env.update(CCRL_ORT_INTRA_THREADS="1", CCRL_XGB_NTHREAD="1", CCRL_API_TOKEN=TOKEN, **extra)
    return env


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


@contextmanager
def _serving(bundle: Path, env: dict[str, str], *options: str) -> Iterator[str]:
    """A real ``ccrl serve`` process on a free port, ready; yields its URL, stops it after."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*_ccrl(), "serve", "--bundle", str(bundle), "--port", str(port), *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_ccrl_serve_with_two_workers_answers_from_outside(
    service_bundle: Path, test_videos: list[Video], service_corpus: Path, tmp_path: Path
) -> None:
    from ccrl.demo import curl_example
    from training.demo import write_example_request

    with _serving(service_bundle, _env(CCRL_MAX_BODY_BYTES="3000000"), "--workers", "2") as url:
        port = int(url.rsplit(":", 1)[1])
        request = write_example_request(service_corpus, tmp_path / "example.json")
        assert "--data @" in curl_example("127.0.0.1", port, request)
        body = request.read_bytes()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        r = httpx.post(
            f"{url}/localize", content=body, headers=headers, timeout=30
        )  # as the README
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["video_id"] == json.loads(body)["video_id"] and out["indexed"] is True
        assert 1 <= len(out["classes"]) <= 3
        assert "gbm;dur=" in r.headers["server-timing"]
        bad = httpx.post(
            f"{url}/localize", content=b'{"rgb": [], "audio": []}', headers=headers, timeout=30
        )
        assert bad.status_code == 422 and "no frames" in bad.json()["detail"]
        big = b'{"rgb": [' + b"0.5, " * 700_000 + b'0.5], "audio": []}'
        r = httpx.post(f"{url}/localize", content=big, headers=headers, timeout=30)
        assert r.status_code == 413 and "over the limit of 3000000" in r.json()["detail"]
        for _ in range(4):  # several requests: both workers answer some of them
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert (
            'ccrl_http_requests_total{method="POST",route="/localize",status="200"} 1.0' in metrics
        )
        assert 'route="/healthz",status="200"} 4.0' in metrics  # summed over the workers
        assert "ccrl_model_info" in metrics


@pytest.mark.slow
def test_ccrl_serve_answers_where_training_and_torch_cannot_be_imported(
    service_bundle: Path, test_videos: list[Video], make_payload: Any, serving_image_env: Any
) -> None:
    """The serving images' case: no ``training`` package, no torch, no ONNX exporter."""
    with _serving(service_bundle, _env(PYTHONPATH=serving_image_env()["PYTHONPATH"])) as url:
        r = httpx.post(f"{url}/localize", json=make_payload(test_videos[0]), timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["classes"]


def _tampered(bundle: Path, tmp: Path, how: str) -> Path:
    out = tmp / f"bundle-{how}"
    shutil.copytree(bundle, out)
    if how == "modified":
        with (out / "ccrl.ubj").open("r+b") as f:
            f.seek(20)
            byte = f.read(1)
            f.seek(20)
            f.write(bytes([byte[0] ^ 0xFF]))
    elif how == "edited manifest":  # every listed file intact; the manifest itself changed
        m = json.loads((out / "manifest.json").read_text())
        m["version"] = "29991231235959"
        (out / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    else:
        (out / "bank.npz").unlink()
    return out


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("modified", "sha256 mismatch"),
        ("missing", "missing"),
        ("edited manifest", "the manifest was edited"),
    ],
)
def test_a_tampered_or_incomplete_bundle_is_refused(
    service_bundle: Path, tmp_path: Path, how: str, words: str
) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.bundle import BundleError
    from service.config import Settings

    bad = _tampered(service_bundle, tmp_path, how)
    target = {"modified": "ccrl.ubj", "missing": "bank.npz"}.get(how, "manifest.json")
    proc = subprocess.run(
        [*_ccrl(), "serve", "--bundle", str(bad), "--port", str(_free_port())],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "refusing to serve" in proc.stderr and words in proc.stderr and target in proc.stderr
    # the app factory's lifespan refuses it too: the app never becomes ready
    app = create_app(Settings(bundle=bad, redis_url=None))
    with pytest.raises(BundleError, match=words), TestClient(app):
        pass


def test_serve_without_a_bundle_says_how_to_give_one() -> None:
    proc = subprocess.run(
        [*_ccrl(), "serve", "--port", str(_free_port())],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "--bundle" in proc.stderr and "CCRL_BUNDLE" in proc.stderr


def test_demo_reuses_an_existing_corpus_and_bundle(
    service_bundle: Path,
    service_corpus: Path,
    tmp_path: Path,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ccrl.demo import run_demo

    data = tmp_path / "demo"
    shutil.copytree(service_corpus, data)
    monkeypatch.delenv("CCRL_API_TOKEN", raising=False)
    run_demo(data=data, bundle=service_bundle, port=8123, build_only=True)
    printed = capsys.readouterr().out
    assert f"--data @{data / 'example-request.json'}" in printed
    token = data / "api-token"  # the demo's write token, passed by the printed curl line
    assert len(token.read_text().strip()) >= 32 and token.stat().st_mode & 0o077 == 0
    assert f'-H "Authorization: Bearer $(cat {token})"' in printed
    run_demo(data=data, bundle=service_bundle, port=8123, build_only=True)
    assert f"$(cat {token})" in capsys.readouterr().out  # the same file the next time
    body = json.loads((data / "example-request.json").read_text())
    assert body["rgb"]["dtype"] == "uint8" and body["video_id"]


def test_demo_sets_an_unusable_bundle_aside(
    service_bundle: Path, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.demo as demo

    bad = _tampered(service_bundle, tmp_path, "modified")
    demo._set_aside_if_unusable(bad)
    assert not bad.exists()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{bad.name}.unusable-")]
    assert len(aside) == 1 and (aside[0] / "manifest.json").is_file()
    assert "sha256 mismatch" in capsys.readouterr().err
    demo._set_aside_if_unusable(service_bundle)  # a good bundle stays where it is
    assert (service_bundle / "manifest.json").is_file()
