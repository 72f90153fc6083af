"""The deploy files serve with the tuned settings of ``service/config.py`` (``DEPLOY_ENV``, measured
in loadtests/README.md), and those settings are the service's own defaults except the worker count
(several workers need the Redis that compose and Kubernetes provide)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from service.config import DEPLOY_ENV, Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _compose_env() -> dict[str, str]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return {k: str(v) for k, v in compose["services"]["ccrl"]["environment"].items()}


def _configmap_env() -> dict[str, str]:
    docs = yaml.safe_load_all((DEPLOY / "k8s" / "configmap.yaml").read_text())
    (cm,) = [d for d in docs if d and d.get("kind") == "ConfigMap"]
    return {k: str(v) for k, v in cm["data"].items()}


def _dockerfile_env(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` pairs of every ENV instruction (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def test_compose_and_kubernetes_set_every_tuned_setting() -> None:
    for where, env in (("compose", _compose_env()), ("k8s configmap", _configmap_env())):
        got = {k: env.get(k) for k in DEPLOY_ENV}
        assert got == DEPLOY_ENV, f"{where}: {got} != {DEPLOY_ENV}"
        assert env["REDIS_URL"].startswith("redis://")  # several workers share the bank


def test_cpu_image_sets_the_tuned_settings_but_the_worker_count() -> None:
    env = _dockerfile_env(DEPLOY / "Dockerfile")
    tuned = {k: v for k, v in DEPLOY_ENV.items() if k != "CCRL_WORKERS"}
    assert {k: env.get(k) for k in tuned} == tuned
    assert "CCRL_WORKERS" not in env  # a standalone container has no Redis: one worker


def test_tuned_settings_are_the_service_defaults_but_the_worker_count() -> None:
    defaults = Settings(_env_file=None)
    tuned = Settings(**{k.removeprefix("CCRL_").lower(): v for k, v in DEPLOY_ENV.items()})
    assert tuned.model_dump(exclude={"workers"}) == defaults.model_dump(exclude={"workers"})
    assert (defaults.workers, tuned.workers) == (1, 2)
