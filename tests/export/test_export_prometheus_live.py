"""The exported Prometheus config and rules on a real Prometheus 2.42 scraping a real SDK
service: the target is up with its ``system`` and ``service`` labels, the rules load, and
every Grafana panel's query evaluates.

Prometheus' DNS discovery asks a DNS server (not /etc/hosts), and this machine has none
that knows a test's names: the test gives the one target as a static target carrying the
``__meta_dns_name`` label DNS discovery would set, so the job's relabelling is the
exported one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from export_helpers import free_port, serve_greeter, wait_for
from ruamel.yaml import YAML

from corral.export import Target, render
from corral.manifest import parse
from corral.plan import Plan, resolve

pytestmark = pytest.mark.integration

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"
MANIFEST = """
name: live
services:
  greeter: {app: greeter.app:svc, database: none}
events:
  topics:
    greeting.sent: {producers: [greeter], consumers: [greeter]}
"""


def _get(url: str, **params: str) -> Any:
    try:
        response = httpx.get(url, params=params, timeout=5.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    return resolve(parse(MANIFEST, tmp_path / "corral.yaml"), python=sys.executable)


@pytest.fixture
def service() -> Iterator[int]:
    with serve_greeter() as port:
        yield port


@pytest.fixture
def prometheus(plan: Plan, service: int, tmp_path: Path) -> Iterator[str]:
    files = render(plan, [Target.PROMETHEUS]).files
    config = YAML(typ="safe").load(files["prometheus/compose.yml"])
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "corral-services"]
    (discovery,) = job.pop("dns_sd_configs")
    assert discovery["names"] == ["greeter"]
    job["static_configs"] = [
        {"targets": [f"127.0.0.1:{service}"], "labels": {"__meta_dns_name": "greeter"}}
    ]
    folder = tmp_path / "prometheus"
    folder.mkdir()
    with (folder / "prometheus.yml").open("w") as out:
        YAML(typ="safe").dump(config, out)
    (folder / "alerts.yml").write_text(files["prometheus/alerts.yml"])
    port = free_port()
    binary = shutil.which("prometheus")
    assert binary, "the prometheus package (Debian) is needed"
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: (
                process.poll() is not None or _get(f"{base}/api/v1/status/buildinfo") is not None
            ),
            "prometheus ready",
        )
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = _get(f"{base}/api/v1/query", query=expr)
    assert answer is not None, f"query failed: {expr}"
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_prometheus_scrapes_labels_and_evaluates_the_exports(
    plan: Plan, service: int, prometheus: str
) -> None:
    """The service is up with system and service labels, its request counter arrives, the
    alert rules are loaded, and every dashboard query evaluates on real data."""
    for _ in range(5):
        httpx.get(f"http://127.0.0.1:{service}/hello/ada", timeout=5)
    up = 'up{system="live",service="greeter"}'
    wait_for(lambda: any(r["value"][1] == "1" for r in _query(prometheus, up)), "the target up")
    requests = 'http_requests_total{system="live",service="greeter",route="/hello/{name}"}'
    wait_for(lambda: bool(_query(prometheus, requests)), "the request counter")
    rules = _get(f"{prometheus}/api/v1/rules")
    assert rules is not None
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert {"CorralInstanceDown", "CorralHighErrorRate", "CorralDeadLettersWaiting"} <= names
    assert all(g["rules"][0]["health"] != "err" for g in rules["data"]["groups"])
    dashboard = json.loads(render(plan, [Target.GRAFANA]).files["grafana/dashboards/live.json"])
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$service", ".*").replace("$__rate_interval", "1m")
            _query(prometheus, expr)  # evaluates without error (empty where no data yet)
    rate = 'sum by (service) (rate(http_requests_total{system="live",service=~".*"}[1m]))'
    wait_for(lambda: bool(_query(prometheus, rate)), "the requests-per-second panel's data")
