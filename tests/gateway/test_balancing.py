"""Ring-hash balancing, active health checks and outlier detection against three real
upstream instances through a real Envoy."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from gateway_harness import Gateway, Upstream, start_gateway, wait_for

MANIFEST = """
name: balancing
services:
  hashed: {command: "true"}
  checked: {command: "true"}
  flaky: {command: "true"}
gateway:
  routes:
    - match: {prefix: /hashed}
      service: hashed
    - match: {prefix: /checked}
      service: checked
    - match: {prefix: /flaky}
      service: flaky
  services:
    hashed: {load_balancing: ring_hash, hash_header: x-user-id}
    checked:
      health_check: {path: /readyz, interval: 100ms, timeout: 1s, unhealthy_threshold: 2}
    flaky:
      outlier_detection: {consecutive_5xx: 3, base_ejection_time: 30s}
"""


@pytest.fixture(scope="module")
def gateway(
    upstreams: dict[str, Upstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    records = [u.record(s) for u in upstreams.values() for s in ("hashed", "checked", "flaky")]
    gw = start_gateway(MANIFEST, tmp_path_factory.mktemp("balancing"), records)
    yield gw
    gw.stop()


@pytest.fixture(autouse=True)
def healthy(upstreams: dict[str, Upstream]) -> Iterator[None]:
    """Every test starts and ends with all three instances healthy."""
    yield
    for upstream in upstreams.values():
        upstream.fault("ok")


def _names(gw: Gateway, path: str, count: int) -> Counter[str]:
    return Counter(gw.client.get(path).json()["name"] for _ in range(count))


@pytest.mark.timeout(15)
def test_ring_hash_keeps_a_header_value_on_one_instance(gateway: Gateway) -> None:
    """Requests with the same x-user-id land on the same instance; many ids use them all."""
    homes: dict[str, str] = {}
    for user in (f"user-{n}" for n in range(30)):
        seen = {
            gateway.client.get("/hashed", headers={"x-user-id": user}).json()["name"]
            for _ in range(5)
        }
        assert len(seen) == 1, (user, seen)
        homes[user] = seen.pop()
    assert set(homes.values()) == {"a", "b", "c"}, Counter(homes.values())


@pytest.mark.timeout(15)
def test_failing_active_health_check_stops_traffic(
    gateway: Gateway, upstreams: dict[str, Upstream]
) -> None:
    """An instance whose health check fails gets no traffic, and gets it back once healthy."""
    assert set(_names(gateway, "/checked", 12)) == {"a", "b", "c"}
    upstreams["c"].fault("unhealthy")
    # Two failed checks 100 ms apart mark it unhealthy; poll, bounded.
    wait_for(lambda: "c" not in _names(gateway, "/checked", 6), timeout=5, what="c out")
    assert "c" not in _names(gateway, "/checked", 30)
    upstreams["c"].fault("ok")
    wait_for(lambda: "c" in _names(gateway, "/checked", 6), timeout=5, what="c back")


@pytest.mark.timeout(15)
def test_consecutive_5xx_eject_an_instance(
    gateway: Gateway, upstreams: dict[str, Upstream]
) -> None:
    """After consecutive_5xx 500s from one instance, outlier detection ejects it."""
    upstreams["b"].fault("failing")
    started = time.monotonic()
    failures = 0
    answers: list[int] = []
    while time.monotonic() - started < 5 and failures < 3:
        answers.append(status := gateway.client.get("/flaky").status_code)
        failures += status == 500
    assert failures == 3, answers
    # Ejected at the third: from now on only a and c answer, and every request succeeds.
    after = [gateway.client.get("/flaky") for _ in range(30)]
    assert {r.status_code for r in after} == {200}
    assert {r.json()["name"] for r in after} == {"a", "c"}
