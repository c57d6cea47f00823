"""Prometheus metrics: route templates, fixed label for unmatched paths, per-service registry."""

from __future__ import annotations

from corral import contract
from corral.sdk import UNMATCHED_ROUTE, Service
from corral.sdk.testing import capture_logs, metric, serve_in_process


def make_service(name: str = "metered") -> Service:
    svc = Service(name)

    @svc.get("/users/{user_id}/orders/{order_id}")
    async def order(user_id: int, order_id: int) -> dict[str, int]:
        return {"user": user_id, "order": order_id}

    return svc


async def test_requests_are_labelled_by_route_template() -> None:
    """Three different raw paths count under one route template, never the raw path."""
    svc = make_service()
    async with serve_in_process(svc) as client:
        for i in range(3):
            await client.get(f"/users/{i}/orders/{i * 10}")
        text = (await client.get(contract.METRICS_PATH)).text
    template = "/users/{user_id}/orders/{order_id}"
    assert metric(svc, "http_requests_total", method="GET", route=template, status="200") == 3
    assert metric(svc, "http_request_duration_seconds_count", method="GET", route=template) == 3
    assert "/users/1/orders" not in text
    assert "process_cpu_seconds_total" in text or "python_info" in text


async def test_unmatched_paths_share_one_label() -> None:
    """404s from random paths all land under the fixed unmatched label."""
    svc = make_service()
    async with serve_in_process(svc) as client:
        for path in ("/a", "/b/c", "/d?x=1"):
            await client.get(path)
    assert (
        metric(svc, "http_requests_total", method="GET", route=UNMATCHED_ROUTE, status="404") == 3
    )


async def test_probes_and_scrapes_are_not_counted_or_logged() -> None:
    """Health probes, /metrics scrapes and `corral status` reading circuits do not count
    as traffic nor write access lines; in-flight returns to 0."""
    svc = make_service()
    polls = (
        contract.READINESS_PATH,
        contract.LIVENESS_PATH,
        contract.METRICS_PATH,
        contract.CIRCUITS_PATH,
    )
    with capture_logs() as lines:
        async with serve_in_process(svc) as client:
            for path in polls:
                assert (await client.get(path)).status_code == 200
            await client.get("/users/1/orders/1")  # traffic: counted and logged
    for path in polls:
        assert metric(svc, "http_requests_total", method="GET", route=path, status="200") == 0
    assert [line["path"] for line in lines if line.get("event") == "request"] == [
        "/users/1/orders/1"
    ]
    assert metric(svc, "http_requests_in_flight") == 0


async def test_two_services_in_one_process_have_separate_registries() -> None:
    """Services in the same process do not share or clash on metrics."""
    first, second = make_service("first"), make_service("second")
    async with serve_in_process(first) as client:
        await client.get("/users/1/orders/1")
    async with serve_in_process(second) as client:
        await client.get("/nope")
    template = "/users/{user_id}/orders/{order_id}"
    assert metric(first, "http_requests_total", method="GET", route=template, status="200") == 1
    assert metric(second, "http_requests_total", method="GET", route=template, status="200") == 0


def test_lock_free_metrics_expose_what_prometheus_client_would() -> None:
    """Counts, cumulative buckets (le inclusive), sums and in-flight match the library's."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from corral.sdk._metrics import BUCKETS, HttpMetrics

    ours = HttpMetrics(process=False)
    reference = CollectorRegistry()
    counter = Counter("http_requests", "", ("method", "route", "status"), registry=reference)
    histogram = Histogram(
        "http_request_duration_seconds",
        "",
        ("method", "route"),
        buckets=BUCKETS,
        registry=reference,
    )
    observations = [
        ("GET", "/a/{x}", 200, 0.0004),
        ("GET", "/a/{x}", 200, 0.005),  # exactly on a bound: counted in le="0.005"
        ("GET", "/a/{x}", 500, 0.3),
        ("POST", "/b", 201, 12.0),  # beyond the last bound: +Inf only
    ]
    for method, route, status, seconds in observations:
        ours.observe(method, route, status, seconds)
        counter.labels(method, route, str(status)).inc()
        histogram.labels(method, route).observe(seconds)
    ours.active += 2

    def samples(
        registry: CollectorRegistry,
    ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created") and s.name != "http_requests_in_flight"
        }

    assert samples(ours.registry) == samples(reference)
    assert ours.sample("http_requests_in_flight") == 2
    created = ours.sample(
        "http_requests_created", {"method": "POST", "route": "/b", "status": "201"}
    )
    assert created is not None
    assert created > 0
