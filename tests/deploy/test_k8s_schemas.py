"""The Kubernetes manifests against the Kubernetes API schemas, one by one and as kustomize renders
them.

``kubernetes-validate`` (PyPI, the dev extra) ships the JSON schemas of every Kubernetes release,
so this runs offline; ``strict`` schemas refuse unknown fields (a misspelled key is an error, not
a silently ignored line). The kustomization (namespace, common labels, images) is rendered here by
:func:`render_kustomization`, which does what ``kubectl kustomize`` does with the fields that file
uses (and refuses any other field); where ``kubectl`` is installed, its rendering must be the same.
The stop sequence is checked too: ``terminationGracePeriodSeconds`` covers the preStop sleep plus
the service's grace period.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

K8S_DIR = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
VERSIONS = ("1.29", "1.33")  # an older supported release and a recent one
KNOWN_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole"}

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev)")


def _docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def _image(ref: str, images: list[dict[str, str]]) -> str:
    name, _, tag = ref.partition(":")
    for entry in images:
        if entry["name"] == name:
            return f"{entry.get('newName', name)}:{entry.get('newTag', tag)}".rstrip(":")
    return ref


def _pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    if "template" in spec:
        return [spec["template"]["spec"]]
    return [spec] if obj["kind"] == "Pod" else []


def render_kustomization(folder: Path) -> list[dict[str, Any]]:
    """The objects of ``folder/kustomization.yaml``: its resources with the namespace, the labels
    (``includeSelectors: false``: metadata only) and the image overrides applied."""
    k = _docs(folder / "kustomization.yaml")[0]
    unknown = set(k) - KNOWN_FIELDS
    assert not unknown, f"kustomization fields this renderer does not know: {unknown}"
    labels: dict[str, str] = {}
    for entry in k.get("labels", []):
        assert not entry.get("includeSelectors") and not entry.get("includeTemplates"), entry
        labels.update(entry["pairs"])
    out = []
    for name in k["resources"]:
        for doc in _docs(folder / name):
            obj = copy.deepcopy(doc)
            meta = obj.setdefault("metadata", {})
            if "namespace" in k and obj["kind"] not in CLUSTER_SCOPED:
                meta["namespace"] = k["namespace"]
            meta["labels"] = {**meta.get("labels", {}), **labels}
            for pod in _pod_specs(obj):
                for c in pod.get("containers", []) + pod.get("initContainers", []):
                    c["image"] = _image(c["image"], k.get("images", []))
            out.append(obj)
    return out


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    files = sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    assert len(files) >= 9
    for path in files:
        for doc in _docs(path):
            kv.validate(doc, version, strict=True)  # raises ValidationError naming the field


@pytest.mark.parametrize("version", VERSIONS)
def test_the_rendered_kustomization_is_valid(version: str) -> None:
    objects = render_kustomization(K8S_DIR)
    assert len({_key(o) for o in objects}) == len(objects) >= 10
    for obj in objects:
        kv.validate(obj, version, strict=True)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ccrl"


def test_the_validator_refuses_a_misspelled_field() -> None:
    (deployment,) = _docs(K8S_DIR / "deployment.yaml")
    bad = copy.deepcopy(deployment)
    spec = bad["spec"]["template"]["spec"]
    spec["terminationGracePeriodSecond"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, VERSIONS[-1], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_the_renderer_agrees_with_kubectl_kustomize() -> None:
    proc = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    theirs = {_key(o): o for o in yaml.safe_load_all(proc.stdout) if o}
    ours = {_key(o): o for o in render_kustomization(K8S_DIR)}
    assert theirs == ours


def test_the_pod_grace_period_covers_the_prestop_sleep_and_the_service_grace() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render_kustomization(K8S_DIR)}
    pod = objects[("Deployment", "ccrl")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    config = objects[("ConfigMap", "ccrl-config")]["data"]
    grace, drain = float(config["CCRL_SHUTDOWN_GRACE_S"]), float(config["CCRL_SHUTDOWN_DRAIN_S"])
    assert drain <= grace
    assert pod["terminationGracePeriodSeconds"] >= float(command[1]) + grace + 5
    redis = objects[("StatefulSet", "redis")]["spec"]["template"]["spec"]["containers"][0]
    args = redis["args"]
    assert args[args.index("--appendonly") + 1] == "yes"  # a restart keeps the index
    assert args[args.index("--appendfsync") + 1] in {"everysec", "always"}
