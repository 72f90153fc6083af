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

TOKEN = "test-token"


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
