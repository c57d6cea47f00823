"""A Prometheus ``file_sd`` target file kept in step with the registry.

``<state_dir>/prometheus/targets.json`` lists every serving instance of a corral.sdk
service (and the gateway's Envoy, with its own metrics path), so a user's own Prometheus
can scrape the local system; ``prometheus.yml`` beside it is a complete configuration
that reads the file (``prometheus --config.file=.corral/prometheus/prometheus.yml``).
Prometheus re-reads the file when it changes; it is replaced by an atomic rename, so a
reader never sees half of it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML

from corral import contract
from corral.runtime.registry import Snapshot

__all__ = ["TargetFile", "prometheus_config", "prometheus_targets"]


def prometheus_targets(
    system: str,
    snapshot: Snapshot,
    *,
    sdk_services: Collection[str],
    gateway_metrics_url: str | None = None,
) -> list[dict[str, Any]]:
    """One target group per serving instance (pure): its address and the labels
    ``corral_system``, ``service`` and ``corral_instance``."""
    groups: list[dict[str, Any]] = []
    for record in snapshot.instances:
        if record.component or not record.serving or record.service not in sdk_services:
            continue
        groups.append(
            {
                "targets": [record.address],
                "labels": {
                    "corral_system": system,
                    "service": record.service,
                    "corral_instance": record.instance,
                },
            }
        )
    if gateway_metrics_url:
        url = urlsplit(gateway_metrics_url)
        groups.append(
            {
                "targets": [url.netloc],
                "labels": {
                    "corral_system": system,
                    "service": f"{contract.COMPONENT_PREFIX}gateway",
                    "corral_instance": f"{contract.COMPONENT_PREFIX}gateway",
                    "__metrics_path__": url.path,
                },
            }
        )
    return groups


def prometheus_config(targets_file: Path, *, interval: float) -> str:
    """A Prometheus configuration scraping exactly the targets in ``targets_file``."""
    seconds = f"{max(1, round(interval))}s"
    document = {
        "global": {"scrape_interval": seconds, "evaluation_interval": seconds},
        "scrape_configs": [
            {
                "job_name": "corral",
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
            }
        ],
    }
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(document, out)
    return "# Written by corral up; scrapes this system's instances.\n" + out.getvalue()


class TargetFile:
    """Writes ``targets.json`` (only when it changed) and ``prometheus.yml`` once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "targets.json"
        self.config_path = directory / "prometheus.yml"
        self._last: str | None = None

    def write_config(self, *, interval: float) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _replace(self.config_path, prometheus_config(self.path, interval=interval))

    def write(self, groups: list[dict[str, Any]]) -> bool:
        """Replace the file atomically if ``groups`` differ from the last write."""
        text = json.dumps(groups, indent=2, sort_keys=True) + "\n"
        if text == self._last:
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        _replace(self.path, text)
        self._last = text
        return True


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
