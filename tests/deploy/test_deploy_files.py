"""The deploy/ files agree with each other and with the service.

Docker is not available to the test suite, so what can be checked without it is checked here: every
YAML parses; compose, Prometheus, Grafana and Kubernetes reference files, ports, probes and settings
that exist; every metric name in the dashboard and the alert rules is one the service registers;
the Dockerfiles install the runtime extra only and run as a non-root user; and, when ``promtool`` is
installed (Debian: ``apt-get install prometheus``), the Prometheus config and rules pass its checks
and the alert unit tests in ``deploy/prometheus/alerts_test.yml``.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
K8S_DIR = DEPLOY / "k8s"

# The service's metric names and types (the contract shared with service/api/metrics.py).
SERVICE_METRICS: dict[str, str] = {
    "ccrl_http_requests_total": "counter",
    "ccrl_http_request_duration_seconds": "histogram",
    "ccrl_stage_duration_seconds": "histogram",
    "ccrl_candidate_classes_per_request": "histogram",
    "ccrl_pairs_per_request": "histogram",
    "ccrl_store_errors_total": "counter",
    "ccrl_degraded": "gauge",
    "ccrl_bank_refreshes_total": "counter",
    "ccrl_bank_segments": "gauge",
    "ccrl_indexed_segments_total": "counter",
    "ccrl_model_info": "gauge",
    "ccrl_reloads_total": "counter",
    "ccrl_index_partial": "gauge",
    "ccrl_redis_resets_total": "counter",
}
# Series Prometheus itself provides.
PROMETHEUS_SERIES = {"up"}
SERVICE_PORT = 8000


def series_names(metrics: dict[str, str]) -> set[str]:
    """Every series name a set of metrics exposes (histograms: _bucket, _sum, _count)."""
    out: set[str] = set()
    for name, kind in metrics.items():
        if kind == "histogram":
            out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            out.add(name)
    return out


ALLOWED_SERIES = series_names(SERVICE_METRICS) | PROMETHEUS_SERIES

_PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (no strings, ranges, groupings, functions)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values, $vars)
    s = re.sub(r"\{[^{}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range selectors and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", r" ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def promql_label_names(expr: str) -> set[str]:
    """Label names used in matchers and in by/without/on/ignoring groupings."""
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^()]*)\)", expr):
        labels |= {x.strip() for x in group.split(",") if x.strip()}
    for matchers in re.findall(r"\{([^{}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    return labels


def load_yaml_docs(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def load_yaml(path: Path) -> Any:
    docs = load_yaml_docs(path)
    assert len(docs) == 1, f"{path}: expected one YAML document, got {len(docs)}"
    return docs[0]


def settings_env_names() -> set[str]:
    """The environment variables service.config.Settings reads."""
    config = pytest.importorskip("service.config", reason="service/config.py not importable")
    from pydantic import AliasChoices

    settings = config.Settings
    prefix = settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for field_name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def service_metrics_instance() -> Any:
    """A fresh ``service.api.metrics.Metrics`` (each has its own registry)."""
    module = pytest.importorskip(
        "service.api.metrics", reason="service/api/metrics.py not there yet"
    )
    return module.Metrics()


def registered_service_metrics() -> dict[str, str]:
    """Exposition name -> type of every ccrl_* series the service's metrics registry holds."""
    found: dict[str, str] = {}
    for metric in service_metrics_instance().registry.collect():
        name = metric.name + ("_total" if metric.type == "counter" else "")
        if name.startswith("ccrl_"):
            found[name] = metric.type
    return found


# --------------------------------------------------------------------------------------------------
# Helpers themselves


def test_promql_parser_finds_metrics_not_functions_labels_or_numbers() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (route, le) (rate(ccrl_x_bucket{route!~"/a|/b"}[5m])))'
        " / clamp_min(sum without (instance) (increase(ccrl_y_total[$__rate_interval])), 1e-9)"
        ' > 1 and on (job) up{job="ccrl"} unless max(ccrl_z) offset 5m'
    )
    assert promql_metric_names(expr) == {"ccrl_x_bucket", "ccrl_y_total", "up", "ccrl_z"}
    assert promql_label_names(expr) == {"route", "le", "instance", "job"}


# --------------------------------------------------------------------------------------------------
# Every YAML file parses


def all_yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def test_every_deploy_yaml_parses() -> None:
    files = all_yaml_files()
    assert len(files) >= 15, files
    for path in files:
        docs = load_yaml_docs(path)
        assert docs, f"{path} is empty"
        assert all(isinstance(d, dict) for d in docs), f"{path}: a document is not a mapping"


# --------------------------------------------------------------------------------------------------
# Metric names


def test_service_registers_exactly_the_contract_metrics() -> None:
    registered = registered_service_metrics()
    assert registered, "service/api/metrics.py registers no ccrl_* metric that this test can find"
    assert registered == SERVICE_METRICS
    # No per-class label on any series: the label sets are small and fixed.
    from prometheus_client.metrics import MetricWrapperBase

    instance = service_metrics_instance()
    wrappers = [v for v in vars(instance).values() if isinstance(v, MetricWrapperBase)]
    assert len(wrappers) == len(SERVICE_METRICS)
    for wrapper in wrappers:
        assert not any("class" in label for label in wrapper._labelnames), wrapper._name


def alert_rules() -> list[dict[str, Any]]:
    doc = load_yaml(PROM_DIR / "alerts.yml")
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard() -> dict[str, Any]:
    dash: dict[str, Any] = json.loads(
        (GRAFANA_DIR / "dashboards" / "ccrl.json").read_text(encoding="utf-8")
    )
    return dash


def dashboard_targets(dash: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield panel, target["expr"]


def test_alerts_and_dashboard_use_only_service_metric_names() -> None:
    used: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in promql_metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    for panel, expr in dashboard_targets(dashboard()):
        for name in promql_metric_names(expr):
            used.setdefault(name, set()).add(f"panel {panel['title']!r}")
    unknown = {n: sorted(w) for n, w in used.items() if n not in ALLOWED_SERIES}
    assert not unknown, f"metric names that the service does not expose: {unknown}"
    # The dashboard and the alerts between them cover every service metric.
    covered = {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in used}
    assert set(SERVICE_METRICS) <= covered, set(SERVICE_METRICS) - covered
    try:
        registered = registered_service_metrics()
    except pytest.skip.Exception:
        return
    assert set(used) <= series_names(registered) | PROMETHEUS_SERIES


def test_no_per_class_label_anywhere() -> None:
    exprs = [r["expr"] for r in alert_rules()] + [e for _, e in dashboard_targets(dashboard())]
    for expr in exprs:
        labels = promql_label_names(expr)
        assert not labels & {"class", "class_id", "class_name"}, expr
        assert labels <= {"route", "method", "status", "stage", "store", "op", "label", "le"} | {
            "name",
            "version",
            "instance",
            "job",
            "result",
        }, (expr, labels)


# --------------------------------------------------------------------------------------------------
# Prometheus


def test_prometheus_config_scrapes_the_service_and_loads_the_rules() -> None:
    config = load_yaml(PROM_DIR / "prometheus.yml")
    for rule_file in config["rule_files"]:
        assert (PROM_DIR / rule_file).is_file(), f"prometheus.yml: rule file {rule_file} missing"
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    ccrl = jobs["ccrl"]
    assert ccrl.get("metrics_path", "/metrics") == "/metrics"
    sd = ccrl["dns_sd_configs"][0]
    compose = load_yaml(DEPLOY / "compose.yaml")
    assert set(sd["names"]) <= set(compose["services"]), "scrape names must be compose services"
    assert sd["port"] == SERVICE_PORT
    # Alerts on `up` select the job that exists.
    for rule in alert_rules():
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in jobs, f"alert {rule['alert']} selects unknown job {job!r}"


REQUIRED_ALERTS = {
    "CcrlHigh5xxRatio": "ccrl_http_requests_total",
    "CcrlHighP99Latency": "ccrl_http_request_duration_seconds_bucket",
    "CcrlDegraded": "ccrl_degraded",
    "CcrlStoreErrors": "ccrl_store_errors_total",
    "CcrlTargetDown": "up",
    "CcrlIndexPartial": "ccrl_index_partial",
    "CcrlReloadRefused": "ccrl_reloads_total",
}


def test_alert_rules_cover_the_required_conditions() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert set(REQUIRED_ALERTS) <= set(rules)
    for name, metric in REQUIRED_ALERTS.items():
        rule = rules[name]
        assert metric in promql_metric_names(rule["expr"]), (name, rule["expr"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"].strip()
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
    assert rules["CcrlDegraded"]["for"] == "2m"
    assert 'status=~"5.."' in rules["CcrlHigh5xxRatio"]["expr"]
    assert "histogram_quantile(0.99" in rules["CcrlHighP99Latency"]["expr"].replace(" ", "")


PROMTOOL = shutil.which("promtool")


# `make test` installs promtool and sets CCRL_REQUIRE_PROMTOOL, so there a missing promtool fails.
@pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CCRL_REQUIRE_PROMTOOL"),
    reason="promtool not installed (Debian: apt-get install prometheus)",
)
def test_promtool_accepts_config_and_rules_and_alert_unit_tests_pass() -> None:
    assert PROMTOOL is not None, "promtool is required here: apt-get install prometheus"
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        proc = subprocess.run(
            [PROMTOOL, *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    # The unit tests exercise every alert rule.
    tests = load_yaml(PROM_DIR / "alerts_test.yml")
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    assert tested == {r["alert"] for r in alert_rules()}


# --------------------------------------------------------------------------------------------------
# Grafana


REQUIRED_PANELS: dict[str, Any] = {
    "request rate": lambda e: "rate(ccrl_http_requests_total" in e and "/" not in e,
    "error ratio": lambda e: 'status=~"5.."' in e and ") / sum(" in e,
    "latency p50 by route": lambda e: (
        "histogram_quantile(0.5," in e
        and "ccrl_http_request_duration_seconds_bucket" in e
        and "by (route" in e
    ),
    "latency p95 by route": lambda e: (
        "histogram_quantile(0.95," in e
        and "ccrl_http_request_duration_seconds_bucket" in e
        and "by (route" in e
    ),
    "latency p99 by route": lambda e: (
        "histogram_quantile(0.99," in e
        and "ccrl_http_request_duration_seconds_bucket" in e
        and "by (route" in e
    ),
    "stage latencies": lambda e: "ccrl_stage_duration_seconds" in e and "by (stage" in e,
    "candidates per request": lambda e: "ccrl_candidate_classes_per_request" in e,
    "pairs per request": lambda e: "ccrl_pairs_per_request" in e,
    "degraded gauge": lambda e: "ccrl_degraded" in e,
    "store errors": lambda e: "ccrl_store_errors_total" in e and "by (store, op)" in e,
    "bank size": lambda e: "ccrl_bank_segments" in e and "by (label)" in e,
    "indexed segments": lambda e: "ccrl_indexed_segments_total" in e,
}


def test_dashboard_has_the_required_panels() -> None:
    exprs = [e for _, e in dashboard_targets(dashboard())]
    missing = [name for name, pred in REQUIRED_PANELS.items() if not any(pred(e) for e in exprs)]
    assert not missing, f"dashboard lacks panels for: {missing}"


def test_dashboard_is_well_formed_and_uses_the_provisioned_datasource() -> None:
    dash = dashboard()
    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yaml")
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus"
    assert urlparse(ds["url"]).hostname in load_yaml(DEPLOY / "compose.yaml")["services"]
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: dict[tuple[int, int], str] = {}
    for panel in dash["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in occupied, f"{panel['title']!r} overlaps {occupied[(x, y)]!r}"
                occupied[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for source in [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]:
            assert source == {"type": "prometheus", "uid": ds["uid"]}, panel["title"]
    # The template variable lists the replicas of the scrape job the config defines.
    (var,) = dash["templating"]["list"]
    assert var["datasource"]["uid"] == ds["uid"]
    assert re.findall(r"label_values\((\w+)\{", var["definition"]) == ["up"]


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards() -> None:
    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "ccrl.yaml")["providers"][0]
    assert provider["type"] == "file"
    grafana = load_yaml(DEPLOY / "compose.yaml")["services"]["grafana"]
    mounts = {
        m["target"]: (DEPLOY / m["source"]).resolve()
        for m in grafana["volumes"]
        if isinstance(m, dict)
    }
    path = provider["options"]["path"]
    assert mounts[path] == (GRAFANA_DIR / "dashboards").resolve()
    assert (mounts[path] / "ccrl.json").is_file()
    assert (
        mounts["/etc/grafana/provisioning/datasources"]
        == (GRAFANA_DIR / "provisioning" / "datasources").resolve()
    )
    assert (
        mounts["/etc/grafana/provisioning/dashboards"]
        == (GRAFANA_DIR / "provisioning" / "dashboards").resolve()
    )


# --------------------------------------------------------------------------------------------------
# Compose


def test_compose_services_files_ports_and_settings() -> None:
    compose = load_yaml(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert {"ccrl", "redis", "prometheus", "grafana"} <= set(services)
    declared_volumes = set(compose.get("volumes", {}))
    for name, service in services.items():
        for mount in service.get("volumes", []):
            if isinstance(mount, str):
                source = mount.split(":", 1)[0]
                assert source in declared_volumes, f"compose {name}: undeclared volume {source}"
                continue
            if mount["type"] == "volume":
                assert mount["source"] in declared_volumes
                continue
            source = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", mount["source"])
            path = (DEPLOY / source).resolve()
            if path.parent == (ROOT / "models").resolve():
                continue  # the bundle: built by `make serve` / `ccrl train`, not committed
            if path.is_relative_to((ROOT / "data").resolve()):
                continue  # a corpus to index: built by `ccrl demo` / `ccrl synth`, not committed
            assert path.exists(), f"compose {name}: bind source {mount['source']} does not exist"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (
                f"compose {name}: {port} is not loopback-only"
            )
    ccrl = services["ccrl"]
    build = ccrl["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).is_file()
    assert f"AS {build['target']}" in (context / build["dockerfile"]).read_text()
    env = ccrl["environment"]
    ccrl_env = {k for k in env if k.startswith("CCRL_") or k == "REDIS_URL"}
    assert ccrl_env <= settings_env_names(), ccrl_env - settings_env_names()
    redis = urlparse(env["REDIS_URL"])
    assert redis.hostname == "redis" and redis.port == 6379
    assert ccrl["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/v2/health/ready" in " ".join(ccrl["healthcheck"]["test"])
    args = ccrl["command"]
    assert args[args.index("--port") + 1] == str(SERVICE_PORT)
    assert ccrl["ports"] == [f"127.0.0.1:{SERVICE_PORT}:{SERVICE_PORT}"]
    assert "/etc/prometheus/alerts.yml" in {
        m["target"] for m in services["prometheus"]["volumes"] if isinstance(m, dict)
    }


# --------------------------------------------------------------------------------------------------
# Kubernetes


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    listed = kustomization["resources"]
    on_disk = sorted(p.name for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk, "kustomization.yaml must list every manifest"
    for name in listed:
        for doc in load_yaml_docs(K8S_DIR / name):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{name}: duplicate {key}"
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == kustomization["namespace"], (name, key)
            objects[key] = doc
    return objects


def test_k8s_deployment_probes_ports_resources_and_security() -> None:
    objs = k8s_objects()
    deployment = objs[("Deployment", "ccrl")]
    pod = deployment["spec"]["template"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": SERVICE_PORT}
    args = container["args"]
    assert args[args.index("--port") + 1] == str(SERVICE_PORT)
    assert args[args.index("--host") + 1] == "0.0.0.0"
    probes = (
        ("readinessProbe", "/v2/health/ready"),
        ("livenessProbe", "/v2/health/live"),
        ("startupProbe", "/v2/health/live"),
    )
    for probe, path in probes:
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in ports or get["port"] == SERVICE_PORT, probe
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(SERVICE_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    # The bundle path the settings point at is inside a mounted volume.
    config = objs[("ConfigMap", "ccrl-config")]["data"]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(config["CCRL_BUNDLE"].startswith(m.rstrip("/") + "/") for m in mounts)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in objs


def test_k8s_env_config_secret_and_redis_are_consistent() -> None:
    objs = k8s_objects()
    container = objs[("Deployment", "ccrl")]["spec"]["template"]["spec"]["containers"][0]
    names: set[str] = set()
    for source in container.get("envFrom", []):
        config = objs[("ConfigMap", source["configMapRef"]["name"])]
        names |= set(config["data"])
        redis_url = config["data"].get("REDIS_URL")
    for var in container.get("env", []):
        names.add(var["name"])
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            secret = objs[("Secret", ref["name"])]
            assert ref["key"] in {**secret.get("data", {}), **secret.get("stringData", {})}
    assert {"CCRL_BUNDLE", "REDIS_URL", "CCRL_API_TOKEN"} <= names
    unknown = {n for n in names if n.startswith("CCRL_") or n == "REDIS_URL"} - settings_env_names()
    assert not unknown, f"settings the service does not read: {unknown}"
    url = urlparse(redis_url)
    redis_service = objs[("Service", url.hostname)]
    assert url.port in {p["port"] for p in redis_service["spec"]["ports"]}
    redis_set = objs[("StatefulSet", "redis")]
    redis_pod_labels = redis_set["spec"]["template"]["metadata"]["labels"]
    assert redis_service["spec"]["selector"].items() <= redis_pod_labels.items()
    redis_ports = {
        p["name"]: p["containerPort"]
        for p in redis_set["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {p["targetPort"] for p in redis_service["spec"]["ports"]} <= set(redis_ports)
    # Redis admits the service's pods, on the port the service connects to, and nobody else.
    policy = objs[("NetworkPolicy", "redis-from-ccrl")]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= redis_pod_labels.items()
    ccrl_labels = objs[("Deployment", "ccrl")]["spec"]["template"]["metadata"]["labels"]
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"].items() <= ccrl_labels.items()
    assert [p["port"] for p in rule["ports"]] == [url.port]


def test_k8s_service_hpa_and_pdb_target_the_deployment() -> None:
    objs = k8s_objects()
    deployment = objs[("Deployment", "ccrl")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port_names = {p["name"] for p in container["ports"]}
    service = objs[("Service", "ccrl")]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    hpa = objs[("HorizontalPodAutoscaler", "ccrl")]
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", "ccrl")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # CPU utilization targets need CPU requests on the pods.
    assert "cpu" in container["resources"]["requests"]
    pdb = objs[("PodDisruptionBudget", "ccrl")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


# --------------------------------------------------------------------------------------------------
# Dockerfiles


def dockerfile_stages(path: Path) -> dict[str, tuple[str, str]]:
    """Stage name -> (the image or stage it starts FROM, its instructions, continuations joined)."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    stages: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            current = m.group(2)
            stages[current] = (m.group(1), [])
        elif current is not None:
            stages[current][1].append(line)
    return {k: (parent, "\n".join(body)) for k, (parent, body) in stages.items()}


def effective_user(stages: dict[str, tuple[str, str]], stage: str) -> str:
    """The USER a stage runs as: its own last USER, else its parent stage's, else root."""
    while stage in stages:
        parent, body = stages[stage]
        users: list[str] = re.findall(r"^USER\s+(\S+)", body, re.MULTILINE)
        if users:
            return users[-1].split(":")[0]
        stage = parent
    return "root"


@pytest.mark.parametrize(
    ("name", "extra", "final"),
    [("Dockerfile", "cpu", "runtime"), ("Dockerfile.gpu", "gpu", "runtime")],
)
def test_dockerfile_installs_runtime_extra_only_and_runs_unprivileged(
    name: str, extra: str, final: str
) -> None:
    path = DEPLOY / name
    stages = dockerfile_stages(path)
    assert final in stages and list(stages)[-1] == final, "the default target is the runtime"
    builder = stages["builder"][1]
    assert re.search(rf'pip install "\.\[{extra}\]"', builder), f"{name}: installs .[{extra}]"
    assert not re.search(r"\[(?:[^\]]*,)?\s*(train|dev|load)\b", builder), name
    assert "import torch" in builder  # the build fails if torch sneaked in
    for stage in stages:
        if stage != "builder":
            assert effective_user(stages, stage) not in {"root", "0"}, (
                f"{name}: {stage} runs as root"
            )
    text = path.read_text(encoding="utf-8")
    assert f"EXPOSE {SERVICE_PORT}" in text
    assert re.search(r'ENTRYPOINT \["ccrl", "serve"\]', text)
    assert "/healthz" in text
    if extra == "gpu":
        assert "nvidia/cuda:" in text
        assert "'CUDAExecutionProvider' in ort.get_available_providers()" in builder
    # Every COPY source from the build context exists and is let through by .dockerignore.
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for src in re.findall(r"^COPY\s+(?!--from)(?:--\S+\s+)*(.+)\s+\S+$", text, re.MULTILINE):
        for item in src.split():
            if item.startswith("${"):
                continue
            assert (ROOT / item).exists(), f"{name}: COPY {item} does not exist"
            assert item.split("/")[0] in allowed, f"{name}: {item} is excluded by .dockerignore"


def test_cpu_dockerfile_bundled_target_copies_a_bundle_into_the_settings_path() -> None:
    stages = dockerfile_stages(DEPLOY / "Dockerfile")
    parent, bundled = stages["bundled"]
    assert parent == "base" and stages["runtime"][0] == "base"
    assert re.search(r"COPY .*\$\{BUNDLE\} /models/current", bundled)
    assert "CCRL_BUNDLE=/models/current" in stages["base"][1]
    assert "CCRL_BUNDLE" in settings_env_names()


def test_entrypoint_options_exist_on_ccrl_serve() -> None:
    from ccrl.cli import serve

    params = set(inspect.signature(serve).parameters)
    assert {"host", "port", "workers", "bundle"} <= params
    # The images, compose and k8s all pass exactly these options.
    for args in (
        load_yaml(DEPLOY / "compose.yaml")["services"]["ccrl"]["command"],
        k8s_objects()[("Deployment", "ccrl")]["spec"]["template"]["spec"]["containers"][0]["args"],
    ):
        options = {a.removeprefix("--") for a in args if a.startswith("--")}
        assert options <= params
