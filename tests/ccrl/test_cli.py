"""The ``ccrl`` command offers only what it can run: in an installation without ``training`` or the
``train`` extra (the serving images), ``serve`` alone, and a clear message for the others.

Each check runs ``python -m ccrl`` in a subprocess whose interpreter cannot import the blocked
modules (``serving_image_env``), next to the same command with everything installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

OFFLINE_COMMANDS = ("synth", "inspect", "score", "train-candidates", "train", "evaluate", "submit")
# One line of each offline command's help, absent from `ccrl --help` where it cannot run.
OFFLINE_HELP = ("Write a synthetic corpus", "Run the whole pipeline", "Write a Kaggle submission")


def _ccrl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccrl", *args],
        env={**(env or os.environ), "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("blocked", [None, ("torch",)], ids=["serving-image", "no-torch"])
def test_without_the_offline_side_help_lists_serve_only(
    serving_image_env: Any, blocked: tuple[str, ...] | None
) -> None:
    env = serving_image_env() if blocked is None else serving_image_env(blocked)
    sanity = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True)
    assert sanity.returncode != 0  # the blocking works: torch cannot be imported there
    proc = _ccrl("--help", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Serve the localization API" in proc.stdout
    assert "need the `train` extra, not installed here" in proc.stdout
    for line in OFFLINE_HELP:
        assert line not in proc.stdout


@pytest.mark.parametrize("command", [*OFFLINE_COMMANDS, "demo"])
def test_an_offline_command_without_the_offline_side_says_what_to_install(
    serving_image_env: Any, command: str
) -> None:
    # With its real arguments, unknown options and --help alike: the message, never a traceback.
    for args in ([command, "data", "--out", "x", "--unknown"], [command, "--help"]):
        proc = _ccrl(*args, env=serving_image_env())
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"`ccrl {command}` is an offline command" in proc.stderr
        assert "missing: training, torch, onnx, matplotlib" in proc.stderr
        assert "install the `train` extra" in proc.stderr and "Traceback" not in proc.stderr


def test_with_the_offline_side_every_command_is_listed_and_runs() -> None:
    proc = _ccrl("--help")
    assert proc.returncode == 0, proc.stderr
    assert "not installed here" not in proc.stdout
    for line in ("Serve the localization API", *OFFLINE_HELP):
        assert line in proc.stdout
    proc = _ccrl("train", "--help")
    assert proc.returncode == 0 and "Bundle folder" in proc.stdout


def test_serve_without_the_offline_side_reaches_the_runtime(serving_image_env: Any) -> None:
    proc = _ccrl("serve", env={**serving_image_env(), "CCRL_BUNDLE": ""})
    assert proc.returncode == 1
    assert "refusing to serve: no model bundle" in proc.stderr and "Traceback" not in proc.stderr
