"""Fixtures of the service tests: tiny real bundles trained once per session, and helpers.

``service_bundle`` comes from the real pipeline (``training.pipeline.run_train`` on the shared
``tiny_corpus``). ``sim_bundle`` is built here from the same parts (a logistic candidate model
exported to ONNX, the bank and pair features of the rated segments, a small XGBoost model): its
segment embeddings are the mean frames, which the unseen-class test needs.
"""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.yt8m import Video

TOKEN = "test-token-0123456789"  # at least 16 characters, as the service requires


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build_logistic_bundle(corpus: Path, out: Path, objective: str = "binary:logistic") -> Path:
    """A tiny real bundle without the pipeline: logistic candidates (random head, mean-frame
    embeddings), the bank of the validate split's ratings, 40 rounds of XGBoost on their pairs
    (``objective``; a ranking objective groups the pairs by class)."""
    import torch

    from service.tfrecord import read_videos
    from training.bundle_writer import write_bundle
    from training.candidates import LogisticModel, model_config
    from training.ccrl import CandidateRunner, build_bank, rated_pairs
    from training.crossfit import fit
    from training.export import export_onnx

    torch.manual_seed(0)
    with (corpus / "vocabulary.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    classes = [{"id": int(r["Index"]), "name": r["Name"], "vertical": r["Vertical1"]} for r in rows]
    num_classes = len(classes)
    model = LogisticModel(model_config("logistic", "small", num_classes))
    work = out.parent / (out.name + "-work")
    work.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, work / "candidate.onnx")
    runner = CandidateRunner(onnx_path, threads=1)
    outputs = runner.run_all(read_videos([corpus / "validate"]), progress=False)
    bank = build_bank(outputs, num_classes)
    pairs = rated_pairs(outputs, bank, progress=False)
    params = {
        "objective": objective,
        "max_depth": 4,
        "eta": 0.3,
        "nthread": 1,
        "max_cat_to_onehot": 1,
    }
    booster = fit(pairs.x, pairs.y, pairs.class_ids, params, 40)
    lines = (corpus / "segment_label_ids.csv").read_text().split()[1:]
    rated = [int(x) for x in lines]
    write_bundle(
        out,
        name=out.name,
        candidate_onnx=onnx_path,
        candidate_meta={
            "input": "frames",
            "num_classes": num_classes,
            "embedding_dim": model.embedding_dim,
            "model": "logistic",
            "preset": "small",
        },
        booster=booster,
        ccrl_params={"max_sim": True, "rounds": 40, "objective": objective},
        config={"ccrl_objective": objective},
        bank=bank,
        classes=classes,
        rated_classes=[int(c) for c in rated],
    )
    shutil.rmtree(work, ignore_errors=True)
    return out


@pytest.fixture(scope="session")
def service_corpus(tiny_corpus: Path) -> Path:
    """The shared tiny synthetic corpus (read-only)."""
    return Path(tiny_corpus)


@pytest.fixture(scope="session")
def service_bundle(service_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real bundle trained once per session by the real pipeline (``run_train``)."""
    out = tmp_path_factory.mktemp("svc-models") / "tiny"
    from training.pipeline import run_train

    run_train(  # one quick epoch: the service tests need real models, not good ones
        service_corpus,
        out,
        preset="small",
        seed=0,
        candidate_epochs=1,
        convnet_pretrain_epochs=0,
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def sim_bundle(service_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny bundle whose segment embeddings are the mean frames (logistic candidates):
    on the tiny corpus its GBM learns to lean on the similarity features, which the unseen-class
    test needs (the tiny LSTM bundle's embeddings are too weak after a few seconds of training)."""
    return _build_logistic_bundle(service_corpus, tmp_path_factory.mktemp("svc-sim") / "sim")


@pytest.fixture(scope="session")
def rank_bundle(service_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``sim_bundle`` recipe with a ranking objective (``rank:pairwise``): its CCRL scores are
    margins, not probabilities."""
    return _build_logistic_bundle(
        service_corpus, tmp_path_factory.mktemp("svc-rank") / "rank", "rank:pairwise"
    )


@pytest.fixture(scope="session")
def test_videos(service_corpus: Path) -> list[Video]:
    """The rated test split of the corpus (videos the bundle never trained on)."""
    from service.tfrecord import read_videos

    return list(read_videos([service_corpus / "test"]))


@pytest.fixture
def make_settings(service_bundle: Path) -> Any:
    """``make_settings(**overrides) -> Settings`` for the tiny bundle (memory store, a token)."""
    from service.config import Settings

    def make(**kw: Any) -> Settings:
        base: dict[str, Any] = {
            "bundle": service_bundle,
            "api_token": TOKEN,
            "ort_intra_threads": 1,
            "xgb_nthread": 1,
            "redis_url": None,
        }
        base.update(kw)
        return Settings(**base)

    return make


@pytest.fixture
def client(make_settings: Any) -> Iterator[Any]:
    """A TestClient on a fresh app (embedded store, write token ``TOKEN``)."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    with TestClient(create_app(make_settings())) as c:
        yield c


def _payload(video: Video, kind: str = "uint8", **extra: Any) -> dict[str, Any]:
    """The /localize body of a video: ``uint8`` / ``float32`` base64, or ``json`` float arrays."""
    from service.decode import encode_frames
    from service.yt8m import dequantize

    if kind == "uint8":
        rgb, audio = encode_frames(video.rgb), encode_frames(video.audio)
    elif kind == "float32":
        rgb, audio = encode_frames(dequantize(video.rgb)), encode_frames(dequantize(video.audio))
    elif kind == "json":
        rgb, audio = dequantize(video.rgb).tolist(), dequantize(video.audio).tolist()
    else:
        raise ValueError(kind)
    return {"rgb": rgb, "audio": audio, **extra}


@pytest.fixture(scope="session")
def make_payload() -> Any:
    """``make_payload(video, kind="uint8"|"float32"|"json", **fields)``: a /localize body."""
    return _payload


@pytest.fixture(scope="session")
def api_token() -> str:
    return TOKEN


class RedisServer:
    """A real ``redis-server`` on a spare port (no persistence) that a test can stop and restart."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed (scripts/ensure-redis.sh installs it)")
        self.exe = exe
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for this test, stopped afterwards."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class UvicornThread:
    """The app served by a real uvicorn server in a thread, on a free port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def serve_app() -> Any:
    """``serve_app(app)``: a context manager running ``app`` on a real HTTP port."""
    return UvicornThread


class CcrlServe:
    """A real ``ccrl serve`` process on a free port (stderr kept in ``log``), for the tests of
    what the server itself does: limits, deadlines, disconnects, start-up refusals."""

    def __init__(self, bundle: Path, log: Path, **env: str) -> None:
        import os
        import sys

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        base = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CCRL_BUNDLE"}}
        base.update(CCRL_ORT_INTRA_THREADS="1", CCRL_XGB_NTHREAD="1", CCRL_API_TOKEN=TOKEN)
        base.update(env)
        self.cmd = [sys.executable, "-m", "ccrl", "serve", "--bundle", str(bundle)]
        self.env = base
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CcrlServe:
        import httpx

        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [*self.cmd, "--port", str(self.port)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ccrl serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("ccrl serve did not become ready")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def connect(self) -> socket.socket:
        """A raw TCP connection to the server (10 s socket timeout)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s


@pytest.fixture(scope="session")
def ccrl_serve() -> Any:
    """``ccrl_serve(bundle, log_path, **env)``: a context manager running ``ccrl serve``."""
    return CcrlServe


class ServeProcess:
    """A real ``ccrl serve`` process on a free port, its output in ``log_path``.

    ``start()`` waits for ``/v2/health/ready``; ``stop()`` sends SIGTERM and returns the exit
    status; the fixture kills what a test left running.
    """

    def __init__(self, bundle: Path, env: dict[str, str], workers: int, log_path: Path) -> None:
        self.bundle = bundle
        self.env = env
        self.workers = workers
        self.log_path = log_path
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> ServeProcess:
        import sys

        import httpx

        args = ["serve", "--bundle", str(self.bundle), "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ccrl", *args, "--workers", str(self.workers)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"ccrl serve exited with {self.proc.returncode}:\n{self.log()}"
                )
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"ccrl serve did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes (the master's children but multiprocessing's
        resource tracker), in pid order; [] with one worker (it serves in the master)."""
        assert self.proc is not None
        out = []
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and b"resource_tracker" not in cmdline:
                out.append(int(entry.name))
        return sorted(out)

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 60) -> int:
        import signal

        self.send(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Any]:
    """``serve_process(bundle, workers=1, **env) -> ServeProcess`` (started, ready): ``env`` adds
    to the environment (one ONNX Runtime and one XGBoost thread, the write token ``TOKEN``)."""
    import os

    started: list[ServeProcess] = []

    def start(bundle: Path, workers: int = 1, **env: str) -> ServeProcess:
        base = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CCRL_BUNDLE"}}
        base.update(CCRL_ORT_INTRA_THREADS="1", CCRL_XGB_NTHREAD="1", CCRL_API_TOKEN=TOKEN)
        base.update(env)
        proc = ServeProcess(bundle, base, workers, tmp_path / f"serve-{len(started)}.log")
        started.append(proc)
        return proc.start()

    try:
        yield start
    finally:
        for proc in started:
            proc.kill()


JSON = {"content-type": "application/json"}


class LoadLoop:
    """A bounded load: ``clients`` threads, each with its own keep-alive connection, posting
    ``/localize`` bodies (with the write ``token``) in turn until ``stop()``, ``max_requests``
    each, or ``max_s``.

    Every request is recorded as ``(sent_at, outcome, detail)``: outcome ``ok`` (200; detail =
    the answering model version, plus ``close`` when the answer said ``Connection: close``),
    ``refused`` (no connection could be made: a clean refusal), ``status`` (another HTTP status)
    or ``error`` (a reset connection, or one closed without an answer).
    """

    def __init__(
        self,
        url: str,
        bodies: list[bytes],
        *,
        clients: int = 2,
        max_requests: int = 400,
        max_s: float = 120.0,
        token: str | None = TOKEN,
    ) -> None:
        self.url = url
        self.headers = dict(JSON)
        if token is not None:  # indexing a video (a body with video_id) needs the token
            self.headers["authorization"] = f"Bearer {token}"
        self.bodies = bodies
        self.max_requests = max_requests
        self.max_s = max_s
        self.records: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def __enter__(self) -> LoadLoop:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def wait_for(self, n: int, timeout: float = 60) -> None:
        """Block until ``n`` requests were recorded in all."""
        deadline = time.monotonic() + timeout
        while len(self.records) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self, k: int) -> None:
        import httpx

        deadline = time.monotonic() + self.max_s
        with httpx.Client(timeout=30) as client:
            for i in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                body = self.bodies[(i + k) % len(self.bodies)]
                sent = time.monotonic()
                record = self._one(client, body)
                with self._lock:
                    self.records.append((sent, *record))
                if record[0] == "refused":
                    time.sleep(0.05)

    def _one(self, client: Any, body: bytes) -> tuple[str, str]:
        import httpx

        try:
            r = client.post(f"{self.url}/localize", content=body, headers=self.headers)
        except httpx.ConnectError as e:
            return "refused", str(e)
        except httpx.HTTPError as e:
            return "error", f"{type(e).__name__}: {e}"
        if r.status_code != 200:
            return "status", f"{r.status_code} {r.text[:200]}"
        close = " close" if r.headers.get("connection", "").lower() == "close" else ""
        return "ok", r.json()["model_version"] + close

    def outcomes(self, since: float = 0.0, until: float = float("inf")) -> dict[str, int]:
        """Outcome -> count of the requests sent in ``[since, until)``."""
        out: dict[str, int] = {}
        for sent, outcome, _ in self.records:
            if since <= sent < until:
                out[outcome] = out.get(outcome, 0) + 1
        return out

    def failures(self) -> list[tuple[float, str, str]]:
        return [r for r in self.records if r[1] in ("error", "status")]


@pytest.fixture(scope="session")
def load_loop() -> Any:
    """The :class:`LoadLoop` class (``with load_loop(url, bodies) as load: ...``)."""
    return LoadLoop
