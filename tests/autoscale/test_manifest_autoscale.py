"""``autoscale:`` in the manifest: what it resolves to, and located errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from corral.manifest import ManifestError, parse
from corral.plan import AutoscalePlan, resolve

BASE = """name: shop
services:
  matching:
    app: matching:svc
    autoscale: {AUTOSCALE}
events:
  topics:
    ride.requested: {producers: [], consumers: [matching]}
"""


def manifest(autoscale: str, tmp_path: Path) -> str:
    return BASE.replace("{AUTOSCALE}", autoscale)


def test_a_policy_resolves_with_its_defaults(tmp_path: Path) -> None:
    """Durations and CPU units are parsed; windows default to HPA-like values."""
    text = manifest("{min: 1, max: 4, target: {p95: 250ms}}", tmp_path)
    plan = resolve(parse(text, tmp_path / "corral.yaml"), python=sys.executable)
    assert plan.services["matching"].autoscale == AutoscalePlan(
        min=1, max=4, metric="p95", target=0.25
    )
    lag = manifest("{max: 3, target: {lag: 50, topic: ride.requested}}", tmp_path)
    policy = resolve(parse(lag, tmp_path / "c.yaml"), python=sys.executable).services["matching"]
    assert policy.autoscale is not None
    assert (policy.autoscale.metric, policy.autoscale.topic) == ("lag", "ride.requested")


@pytest.mark.parametrize(
    ("autoscale", "expected"),
    [
        (
            "{min: 5, max: 2, target: {cpu: 500m}}",
            "services.matching.autoscale.min: autoscale min (5) is larger than max (2)",
        ),
        ("{max: 2, target: {rps: 5}}", "services.matching.autoscale.target.rps: unknown key"),
        ("{max: 2, target: {cpu: 1, in_flight: 3}}", "exactly one of in_flight, p95, cpu or lag"),
        ("{max: 2, target: {lag: 10}}", "a lag target needs the topic it counts"),
        (
            "{max: 2, target: {lag: 10, topic: ride.cancelled}}",
            "services.matching.autoscale.target.topic: service 'matching' does not consume "
            "topic 'ride.cancelled'",
        ),
    ],
)
def test_bad_policies_are_located_errors(tmp_path: Path, autoscale: str, expected: str) -> None:
    """min > max, an unknown measure, two measures, lag without (or with a foreign) topic."""
    with pytest.raises(ManifestError) as caught:
        parse(manifest(autoscale, tmp_path), tmp_path / "corral.yaml")
    assert expected in str(caught.value)
    assert "corral.yaml:5:" in str(caught.value)
