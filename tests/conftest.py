"""Shared fixtures of the whole test suite.

- ``tiny_corpus`` (session): a small real synthetic corpus written by ``training.synth.run_synth``
  (120 videos: 72 train / 30 validate / 18 test, 20 classes of which 12 are rated, 30..90 frames
  per video, 2 shards per split, seed 7). Returns its folder: ``train/``, ``validate/``, ``test/``,
  ``vocabulary.csv``, ``segment_label_ids.csv``, ``synth.json``. Treat it as read-only: copy it
  first if a test needs to modify it.
- ``redis_url`` (function): the URL of a real, empty Redis database (``REDIS_TEST_URL``, default
  ``redis://127.0.0.1:6379/15``), flushed before and after the test. An unreachable Redis is a test
  failure, not a skip: ``make test`` starts one (``scripts/ensure-redis.sh``).
- ``serving_image_env`` (function): ``make(blocked=SERVING_IMAGE_BLOCKED) -> env``, the environment
  of a subprocess in which the ``blocked`` top-level modules cannot be imported (as in the serving
  images, which install neither ``training`` nor the ``train`` extra), through a ``sitecustomize``
  on ``PYTHONPATH`` that every child interpreter (uvicorn workers too) runs at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TINY_CORPUS_ARGS = {
    "videos": 120,
    "classes": 20,
    "seed": 7,
    "shards": 2,
    "min_frames": 30,
    "max_frames": 90,
}
DEFAULT_REDIS_TEST_URL = "redis://127.0.0.1:6379/15"
REPO = Path(__file__).resolve().parents[1]
# What the serving images lack: our offline package and the `train` extra's modules.
SERVING_IMAGE_BLOCKED = ("training", "torch", "onnx", "onnxscript", "matplotlib")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic corpus (a few seconds to build), shared by the whole session."""
    from training.synth import run_synth

    out = tmp_path_factory.mktemp("tiny_corpus")
    run_synth(out, progress=False, **TINY_CORPUS_ARGS)  # type: ignore[arg-type]
    return out


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A real Redis database URL, empty at the start and flushed again at the end."""
    import redis

    url = os.environ.get("REDIS_TEST_URL", DEFAULT_REDIS_TEST_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.fail(
            f"Redis is unreachable at {url} ({exc}). Start it with `make redis` "
            "(scripts/ensure-redis.sh) or point REDIS_TEST_URL at a server; "
            "the Redis tests never skip.",
            pytrace=False,
        )
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def serving_image_env(tmp_path: Path) -> Any:
    """``make(blocked=SERVING_IMAGE_BLOCKED) -> dict[str, str]``: a subprocess environment where
    ``import NAME`` fails and ``importlib.util.find_spec(NAME)`` is None for every blocked name, as
    for a module that is not installed (``sys.modules[NAME] = None``)."""

    def make(blocked: tuple[str, ...] = SERVING_IMAGE_BLOCKED) -> dict[str, str]:
        site = tmp_path / f"site-without-{'-'.join(blocked)}"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(
            f"import sys\nfor _name in {blocked!r}:\n    sys.modules[_name] = None\n",
            encoding="utf-8",
        )
        path = os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")])
        return {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep)}

    return make
