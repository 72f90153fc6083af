"""The dashboard and the alerts against a real Prometheus scraping a real ``ccrl serve``.

Debian's ``prometheus`` server (the package that also brings promtool; ``make test`` installs it)
runs on a free loopback port with a one-second scrape of the service under a little load and the
alert rules of deploy/prometheus/alerts.yml. Then, through Prometheus's HTTP API: every dashboard
panel expression (its template variables substituted as Grafana would) parses and returns data on
the healthy service (zero where nothing happened), every alert expression parses and every rule
evaluates without error; and ``promtool check metrics`` has nothing to say about ``/metrics``.
Bounded: about half a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.yt8m import Video

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ccrl.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
REQUIRED = bool(os.environ.get("CCRL_REQUIRE_PROMTOOL"))
# What Grafana puts in place of the template variables (All replicas; a 1 s scrape interval).
JSON = {"content-type": "application/json"}
VARIABLES = {"$instance": ".*", "$__rate_interval": "15s", "$__range": "1m"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _substitute(expr: str) -> str:
    for var, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    assert "$" not in expr, expr
    return expr


def panel_queries() -> list[tuple[str, str]]:
    """(panel title / refId, PromQL) of every dashboard target, variables substituted."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (f"{p['title']} / {t['refId']}", _substitute(t["expr"]))
        for p in dash["panels"]
        for t in p.get("targets", [])
    ]


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """``start(target) -> url``: a real Prometheus scraping ``target`` (host:port) every second."""
    if PROMETHEUS is None:
        assert not REQUIRED, "the prometheus server is required here: apt-get install prometheus"
        pytest.skip("prometheus not installed (Debian: apt-get install prometheus)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "ccrl", "static_configs": [{"targets": [target]}]}],
        }
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        port = _free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        assert PROMETHEUS is not None
        procs.append(
            subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        url = f"http://127.0.0.1:{port}"
        _until(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 60)
        return url

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def _until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.25)


def _query(url: str, expr: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    out: dict[str, Any] = r.json()
    assert r.status_code == 200 and out["status"] == "success", (expr, out)
    return out


def _little_load(url: str, bodies: list[bytes], stop: threading.Event, token: str) -> None:
    """A few requests a second: localize (indexed), a top-segments page, a 422, a 404."""
    with httpx.Client(timeout=30, headers={"authorization": f"Bearer {token}"}) as c:
        for i in range(400):  # bounded; the test stops it much earlier
            if stop.wait(0.2):
                return
            c.post(f"{url}/localize", content=bodies[i % len(bodies)], headers=JSON)
            if i % 5 == 0:
                c.get(f"{url}/classes/1/top-segments")
                c.post(f"{url}/localize", content=b'{"rgb": [], "audio": []}', headers=JSON)
                c.get(f"{url}/classes/99999/top-segments")


def test_every_panel_returns_data_and_every_alert_evaluates(
    serve_process: Any,
    prometheus: Any,
    service_bundle: Path,
    test_videos: list[Video],
    make_payload: Any,
    api_token: str,
) -> None:
    srv = serve_process(service_bundle)
    bodies = [
        json.dumps(make_payload(v, video_id=v.id, overwrite=True)).encode() for v in test_videos[:3]
    ]
    stop = threading.Event()
    load = threading.Thread(target=_little_load, args=(srv.url, bodies, stop, api_token))
    load.start()
    try:
        prom = prometheus(f"127.0.0.1:{srv.port}")
        enough = 'count_over_time(up{job="ccrl"}[15s]) >= 8'
        _until(lambda: _query(prom, enough)["data"]["result"], 90)
        empty = [name for name, expr in panel_queries() if not _query(prom, expr)["data"]["result"]]
        assert not empty, f"panels without data on a healthy service: {empty}"
        for rule in alert_rules():
            _query(prom, rule["expr"])  # parses and evaluates
        _until(lambda: _rules_evaluated(prom) == {r["alert"] for r in alert_rules()}, 30)
        values = httpx.get(
            f"{prom}/api/v1/label/instance/values",
            params={"match[]": 'up{job="ccrl"}'},
            timeout=10,
        ).json()["data"]
        assert values == [f"127.0.0.1:{srv.port}"]  # the dashboard's replica variable
        firing = _query(prom, 'ALERTS{alertstate="firing"}')["data"]["result"]
        assert firing == [], firing  # a healthy service fires nothing
    finally:
        stop.set()
        load.join(timeout=60)
    metrics = httpx.get(f"{srv.url}/metrics", timeout=10).text
    _promtool_check_metrics(metrics)
    assert srv.stop() == 0


def _rules_evaluated(prom: str) -> set[str]:
    """The alerts whose rule Prometheus evaluated, and without an error."""
    groups = httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    bad = [(r["name"], r.get("lastError")) for r in rules if r.get("health") == "err"]
    assert not bad, bad
    return {r["name"] for r in rules if r.get("health") == "ok"}


def _promtool_check_metrics(text: str) -> None:
    if PROMTOOL is None:
        assert not REQUIRED, "promtool is required here: apt-get install prometheus"
        return
    proc = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
