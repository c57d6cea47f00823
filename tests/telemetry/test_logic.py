"""The pure parts of corral.telemetry and the browser login, table-driven, with fakes
only where time or the registry would otherwise be real (test_system.py runs them real)."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from corral.api._browser import SessionCookieAuth, browser_router
from corral.api._logins import BrowserLogins, LoginRefused, Refusal
from corral.api._problems import install
from corral.manifest import DatabaseEngine, RestartPolicy
from corral.manifest import parse as parse_manifest
from corral.plan import DatabasePlan, RestartPlan, ServicePlan, resolve
from corral.runtime.registry import InstanceRecord, InstanceState, Registry, Snapshot
from corral.telemetry import (
    InstanceScrape,
    MetricsWindow,
    OtlpError,
    TelemetryAddon,
    TraceStore,
    decode_spans,
    histogram_quantile,
    parse_envoy,
    parse_service,
    prometheus_targets,
    summarize,
)

INF = math.inf


@pytest.mark.parametrize(
    ("q", "bounds", "counts", "expected"),
    [
        (0.5, (0.1, 1.0, INF), (10, 0, 0), 0.05),  # interpolated from 0 in the first bucket
        (0.5, (0.1, 1.0, INF), (5, 5, 0), 0.1),  # the rank ends exactly at a bound
        (0.75, (0.1, 1.0, INF), (5, 5, 0), 0.55),  # half-way into the second bucket
        (0.99, (0.1, 1.0, INF), (90, 0, 10), 1.0),  # in +Inf: the highest finite bound
        (0.5, (0.1, 1.0, INF), (0, 0, 0), None),  # nothing observed
        (0.95, (0.005, 0.01, 0.025, INF), (19, 0, 1, 0), 0.005),
    ],
)
def test_histogram_quantile(
    q: float, bounds: tuple[float, ...], counts: tuple[int, ...], expected: float | None
) -> None:
    """Quantiles as Prometheus' histogram_quantile computes them."""
    found = histogram_quantile(q, bounds, counts)
    assert found == (pytest.approx(expected) if expected is not None else None)


SDK_TEXT = """\
# TYPE http_requests counter
http_requests_total{method="GET",route="/a",status="200"} 8.0
http_requests_total{method="GET",route="/a",status="503"} 2.0
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1",method="GET",route="/a"} 6.0
http_request_duration_seconds_bucket{le="1.0",method="GET",route="/a"} 9.0
http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/a"} 10.0
http_request_duration_seconds_count{method="GET",route="/a"} 10.0
http_request_duration_seconds_sum{method="GET",route="/a"} 3.5
# TYPE corral_client_retries counter
corral_client_retries_total{target="b"} 3.0
# TYPE corral_client_circuit_state gauge
corral_client_circuit_state{target="b"} 2.0
# TYPE corral_client_circuit_transitions counter
corral_client_circuit_transitions_total{target="b",state="open"} 1.0
# TYPE corral_client_bulkhead_rejections counter
corral_client_bulkhead_rejections_total{target="b"} 4.0
"""


def test_parse_service_turns_cumulative_buckets_into_per_bucket_counts() -> None:
    """Requests by status, per-bucket latency counts and the client counters are read."""
    scrape = parse_service(SDK_TEXT)
    assert scrape.counters["http", "GET", "/a", "503"] == 2
    assert scrape.counters["bucket", "GET", "/a", "0.1"] == 6
    assert scrape.counters["bucket", "GET", "/a", "1.0"] == 3
    assert scrape.counters["bucket", "GET", "/a", "+Inf"] == 1
    assert scrape.counters["retries", "b"] == 3
    assert scrape.counters["circuit_changes", "b", "open"] == 1
    assert scrape.gauges["circuit_state", "b"] == 2


ENVOY_TEXT = """\
# TYPE envoy_http_downstream_rq_xx counter
envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="gateway"} 7
envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="admin"} 99
# TYPE envoy_cluster_upstream_rq_xx counter
envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="web"} 1
envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="corral-admin"} 50
# TYPE envoy_http_downstream_rq_time histogram
envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="gateway",le="1"} 5
envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="gateway",le="+Inf"} 7
envoy_http_downstream_rq_time_sum{envoy_http_conn_manager_prefix="gateway"} 20
envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix="gateway"} 7
"""  # noqa: E501 - Envoy's own lines


def test_parse_envoy_keeps_the_gateway_listener_and_user_clusters_in_seconds() -> None:
    """Admin listener and Corral's own clusters are left out; milliseconds become seconds."""
    scrape = parse_envoy(ENVOY_TEXT, internal_prefix="corral-")
    assert scrape.counters == {
        ("http", "", "*", "2xx"): 7,
        ("http", "", "web", "5xx"): 1,
        ("bucket", "", "*", "0.001"): 5,
        ("bucket", "", "*", "+Inf"): 2,
        ("latency_sum", "", "*"): 0.02,
    }


def _scrape(requests: float, *, pid: int = 1, instance: str = "a-1") -> InstanceScrape:
    text = f'http_requests_total{{method="GET",route="/x",status="200"}} {requests}\n'
    return InstanceScrape("a", instance, pid, parse_service(text))


@pytest.mark.parametrize(
    ("rounds", "expected"),
    [
        ([(0, [_scrape(5)]), (2, [_scrape(9)])], 9),  # a new instance counts from zero
        ([(0, [_scrape(5)]), (2, [_scrape(3, pid=2)])], 8),  # restarted: a new process
        ([(0, [_scrape(5)]), (2, [_scrape(2)])], 7),  # a counter went down: reset
        ([(0, [_scrape(5)]), (2, []), (4, [_scrape(9)])], 9),  # a missed scrape loses nothing
        ([(0, [_scrape(5), _scrape(1, instance="a-2")]), (2, [_scrape(6)])], 7),  # replicas add
    ],
)
def test_window_counts_increments(
    rounds: list[tuple[float, list[InstanceScrape]]], expected: int
) -> None:
    """Increments survive restarts, resets and missed scrapes, and sum over replicas."""
    window = MetricsWindow()
    for t, scrapes in rounds:
        window.record(100.0 + t, scrapes)
    assert summarize(window, "a", [], now=110.0, seconds=60)["requests"] == expected


def test_window_forgets_what_is_older_than_it_keeps() -> None:
    """Ticks older than ``keep`` are dropped; a summary covers only the time seen."""
    window = MetricsWindow(keep=10)
    window.record(0.0, [_scrape(0)])
    window.record(5.0, [_scrape(4)])
    window.record(20.0, [_scrape(6)])
    summary = summarize(window, "a", [], now=20.0, seconds=60)
    assert summary["requests"] == 2
    assert summary["window"] == 20.0
    series = window.series("a", now=20.0, window=20.0, step=10.0)
    assert series["t"] == [10.0, 20.0]
    assert series["rate"] == [0.0, 0.2]


def _span(trace: str, span: str, parent: str | None, service: str, start: int) -> dict[str, Any]:
    return {"trace": trace, "span": span, "parent": parent, "service": service, "start": start}


def _request(*spans: dict[str, Any]) -> bytes:
    request = ExportTraceServiceRequest()
    for item in spans:
        resource = request.resource_spans.add()
        resource.resource.attributes.append(
            KeyValue(key="service.name", value=AnyValue(string_value=item["service"]))
        )
        span = resource.scope_spans.add().spans.add()
        span.trace_id = bytes.fromhex(item["trace"])
        span.span_id = bytes.fromhex(item["span"])
        if item["parent"]:
            span.parent_span_id = bytes.fromhex(item["parent"])
        span.name = f"{item['service']} op"
        span.start_time_unix_nano = item["start"]
        span.end_time_unix_nano = item["start"] + 1_000_000
    return bytes(request.SerializeToString())


T1, T2 = "1" * 32, "2" * 32


def test_trace_store_assembles_a_trace_from_batches_of_two_services() -> None:
    """Spans of one trace sent separately (child first) form one trace with its root."""
    store = TraceStore()
    child = _request(_span(T1, "b" * 16, "a" * 16, "back", 2_000_000))
    root = _request(_span(T1, "a" * 16, None, "front", 1_000_000))
    store.add(decode_spans(child, content_type="application/x-protobuf", encoding=None))
    gz = gzip.compress(root)
    store.add(decode_spans(gz, content_type="application/x-protobuf", encoding="gzip"))
    trace = store.get(T1)
    assert trace is not None
    assert trace["services"] == ["back", "front"]
    assert trace["name"] == "front op"
    assert trace["complete"] is True
    assert [s["service"] for s in trace["spans"]] == ["front", "back"]


def test_trace_store_keeps_the_last_traces_and_bounds_spans() -> None:
    """The least recently touched trace goes first; spans past the bound are counted."""
    store = TraceStore(max_traces=1, max_spans=1)
    for trace, span in ((T1, "a" * 16), (T2, "b" * 16), (T2, "c" * 16)):
        store.add(
            decode_spans(
                _request(_span(trace, span, None, "s", 1)),
                content_type="application/x-protobuf",
                encoding=None,
            )
        )
    assert store.get(T1) is None
    listed = store.list()
    assert [t["trace_id"] for t in listed] == [T2]
    assert listed[0]["dropped"] == 1


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "status"),
    [
        (b"x", "application/json", None, 415),
        (b"x", "application/x-protobuf", "br", 415),
        (b"not gzip", "application/x-protobuf", "gzip", 400),
        (b"\xff\xff\xff", "application/x-protobuf", None, 400),
    ],
)
def test_decode_refuses_what_is_not_otlp_protobuf(
    body: bytes, content_type: str, encoding: str | None, status: int
) -> None:
    """Each unreadable request gets its own HTTP status."""
    with pytest.raises(OtlpError) as caught:
        decode_spans(body, content_type=content_type, encoding=encoding)
    assert caught.value.status == status


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_login_tokens_are_one_time_and_expire() -> None:
    """A token works once within its lifetime; sessions expire and can be revoked."""
    clock = Clock()
    logins = BrowserLogins(clock=clock, login_ttl=60, session_ttl=100)
    token = logins.issue()
    session = logins.redeem(token)
    assert logins.valid(session)
    with pytest.raises(LoginRefused) as used:
        logins.redeem(token)
    assert used.value.reason is Refusal.UNKNOWN
    late = logins.issue()
    clock.now += 61
    with pytest.raises(LoginRefused) as expired:
        logins.redeem(late)
    assert expired.value.reason is Refusal.EXPIRED
    clock.now += 40
    assert not logins.valid(session)
    fresh = logins.redeem(logins.issue())
    logins.revoke(fresh)
    assert not logins.valid(fresh)


async def test_an_expired_login_link_is_a_problem_json_401() -> None:
    """Through the API's own router and error handlers: expired -> 401 problem+json."""
    clock = Clock()
    logins = BrowserLogins(clock=clock, login_ttl=5)
    app = FastAPI()
    install(app)
    app.include_router(browser_router(logins, admin=Depends(lambda: None)))
    app.add_middleware(SessionCookieAuth, logins=logins, admin_token="admin")
    token = logins.issue()
    clock.now += 6
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5000") as client:
        answer = await client.post(
            "/v1/dashboard/session",
            json={"token": token},
            headers={"origin": "http://127.0.0.1:5000"},
        )
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["title"] == "this login link has expired"


def _record(service: str, instance: str, port: int, *, ready: bool = True) -> InstanceRecord:
    return InstanceRecord(service, instance, "127.0.0.1", port, InstanceState.RUNNING, ready=ready)


def test_prometheus_targets_list_serving_sdk_instances_and_the_gateway() -> None:
    """Serving instances of SDK services, each labelled; the gateway with its path."""
    snapshot = Snapshot(
        3,
        (
            _record("web", "web-1", 8001),
            _record("web", "web-2", 8002, ready=False),
            _record("worker", "worker-1", 8003),
        ),
    )
    groups = prometheus_targets(
        "demo",
        snapshot,
        sdk_services={"web"},
        gateway_metrics_url="http://127.0.0.1:9901/stats/prometheus",
    )
    assert groups == [
        {
            "targets": ["127.0.0.1:8001"],
            "labels": {"corral_system": "demo", "service": "web", "corral_instance": "web-1"},
        },
        {
            "targets": ["127.0.0.1:9901"],
            "labels": {
                "corral_system": "demo",
                "service": "corral-gateway",
                "corral_instance": "corral-gateway",
                "__metrics_path__": "/stats/prometheus",
            },
        },
    ]


def _service(env: dict[str, str]) -> ServicePlan:
    return ServicePlan(
        name="web",
        argv=("true",),
        workdir=Path(),
        replicas=1,
        fixed_port=None,
        env=env,
        readiness=None,
        liveness=None,
        startup=None,
        depends_on={},
        restart=RestartPlan(RestartPolicy.ALWAYS, 0.1, 1.0, 2.0, 10.0),
        stop_grace_period=1.0,
        database=DatabasePlan(engine=DatabaseEngine.NONE, name="web"),
    )


@pytest.mark.parametrize(
    ("manifest_env", "environ", "points_here"),
    [
        ({}, {}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, {}, False),
        ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({}, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, False),
    ],
)
def test_instances_export_here_unless_the_user_chose_a_collector(
    manifest_env: dict[str, str], environ: dict[str, str], points_here: bool
) -> None:
    """The receiver and its token go to instances only when no endpoint was set."""
    addon = TelemetryAddon(environ=environ)
    addon.otlp_endpoint = "http://127.0.0.1:1234/otlp"
    env = addon.environment(_service(manifest_env))
    assert bool(env) is points_here
    if points_here:
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:1234/otlp"
        assert env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"].startswith("authorization=Bearer%20")


async def test_instances_that_leave_the_registry_are_forgotten(tmp_path: Path) -> None:
    """The window's per-instance memory (last counters and gauges) follows the registry:
    an instance stopped for good (removed, not merely unready) is dropped, so a system
    that scales up and down for weeks does not grow the control plane."""
    manifest = parse_manifest(
        "name: demo\nservices:\n  a: {app: 'a:svc', database: none}\n",
        tmp_path / "corral.yaml",
    )
    plan = resolve(manifest, python="python3")
    registry = Registry()
    for n in (1, 2):
        registry.put(_record("a", f"a-{n}", 1))  # port 1: every scrape fails, harmlessly
    addon = TelemetryAddon(interval=3600)
    await addon.start(SimpleNamespace(plan=plan, registry=registry, state_dir=tmp_path))  # type: ignore[arg-type]
    try:
        now = time.time()
        addon.window.record(now, [_scrape(5, instance="a-1"), _scrape(1, instance="a-2")])
        assert len(addon.window.gauges(["a-1", "a-2"])) == 2
        registry.remove("a-2")
        async with asyncio.timeout(5):
            while addon.window.gauges(["a-2"]):
                await asyncio.sleep(0.01)
        assert len(addon.window.gauges(["a-1"])) == 1
    finally:
        await addon.stop()


def test_a_scrape_that_lands_after_its_instance_left_is_not_kept_for_ever() -> None:
    """A round that began before an instance was removed may record it once more; the
    window drops any instance it has not heard of for longer than it keeps ticks."""
    window = MetricsWindow(keep=10)
    window.record(0.0, [_scrape(1, instance="a-1"), _scrape(1, instance="a-2")])
    window.record(20.0, [_scrape(2, instance="a-1")])
    assert window.gauges(["a-2"]) == []
    assert len(window.gauges(["a-1"])) == 1


def test_spans_are_redacted_at_the_receiver() -> None:
    """Defence in depth behind the SDK's own redaction: a secret in a span's name,
    status message, attributes (nested too) or an event's attributes (an exception's
    message and stack trace) is redacted as the receiver takes the span in."""
    secret = "sk-live-0123456789"
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="pay"))
    )
    span = resource.scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex(T1)
    span.span_id = bytes.fromhex("a" * 16)
    span.name = f"GET /charge/{secret}"
    span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    span.status.code = 2
    span.status.message = f"RuntimeError: {secret}"
    span.attributes.append(KeyValue(key="url", value=AnyValue(string_value=f"/x?k={secret}")))
    nested = AnyValue()
    nested.array_value.values.append(AnyValue(string_value=secret))
    span.attributes.append(KeyValue(key="list", value=nested))
    event = span.events.add()
    event.name = "exception"
    for key in ("exception.message", "exception.stacktrace"):
        event.attributes.append(KeyValue(key=key, value=AnyValue(string_value=f"boom {secret}")))
    addon = TelemetryAddon()
    addon.redact = lambda text: text.replace(secret, "**********")
    addon.ingest(
        bytes(request.SerializeToString()), content_type="application/x-protobuf", encoding=None
    )
    trace = addon.trace(T1)
    assert trace is not None
    assert secret not in json.dumps(trace)
    assert trace["spans"][0]["events"][0]["attributes"]["exception.message"] == "boom **********"


async def test_event_history_gives_topic_rates_and_consumer_lag() -> None:
    """Samples of the bus become per-topic publish rates and per-consumer lag; a bus that
    did not answer leaves a gap (null rate), not a made-up zero."""
    answers: list[Any] = [
        {
            "topics": [
                {
                    "topic": "ride.requested",
                    "messages": 10,
                    "consumers": [{"consumer": "matching", "pending": 0}],
                }
            ]
        },
        {
            "topics": [
                {
                    "topic": "ride.requested",
                    "messages": 30,
                    "consumers": [{"consumer": "matching", "pending": 5}],
                }
            ]
        },
        RuntimeError("bus restarting"),
        {
            "topics": [
                {
                    "topic": "ride.requested",
                    "messages": 40,
                    "consumers": [{"consumer": "matching", "pending": 1}],
                }
            ]
        },
    ]

    async def bus() -> dict[str, Any] | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    addon = TelemetryAddon(event_bus=bus)
    for t in (1000.0, 1010.0, 1020.0, 1050.0):
        assert await addon.sample_bus(now=t)
    history = addon.event_history(window=3600, now=1055.0)
    assert history is not None
    assert history["t"] == [1000.0, 1010.0, 1050.0]
    assert history["topics"] == {"ride.requested": [None, 2.0, None]}  # 40 s apart: a gap
    assert history["lag"] == {"ride.requested/matching": [0, 5, 1]}
    assert TelemetryAddon().event_history(window=60) is None  # no bus
