"""Telemetry in the control plane: what the services emit, gathered in one place.

A scraper follows the registry and reads every serving instance's Prometheus metrics
(and the gateway's Envoy stats) into a bounded in-memory window, from which RED
summaries and time series are drawn per service and route; an OTLP/HTTP receiver keeps
the last traces, assembled across services; a Prometheus ``file_sd`` file lists the
instances for a user's own Prometheus. ``TelemetryAddon`` plugs all of it into the local
runtime; the control-plane API serves what it holds, and the dashboard draws it.
"""

from corral.telemetry._addon import GATEWAY_SERVICE, TRACES_HEADERS, TelemetryAddon
from corral.telemetry._file_sd import TargetFile, prometheus_config, prometheus_targets
from corral.telemetry._graph import system_graph
from corral.telemetry._otlp import PROTOBUF, OtlpError, SpanRecord, decode_spans
from corral.telemetry._quantiles import histogram_quantile
from corral.telemetry._samples import Scrape, parse_envoy, parse_service
from corral.telemetry._scraper import Scraper, ScrapeTarget
from corral.telemetry._store import (
    DEFAULT_KEEP,
    DEFAULT_MAX_BYTES,
    LEVELS,
    LogQuery,
    LogRecord,
    StoreReader,
    TelemetryStore,
    TraceQuery,
)
from corral.telemetry._traces import TraceStore
from corral.telemetry._window import InstanceScrape, MetricsWindow, summarize

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "GATEWAY_SERVICE",
    "LEVELS",
    "PROTOBUF",
    "TRACES_HEADERS",
    "InstanceScrape",
    "LogQuery",
    "LogRecord",
    "MetricsWindow",
    "OtlpError",
    "Scrape",
    "ScrapeTarget",
    "Scraper",
    "SpanRecord",
    "StoreReader",
    "TargetFile",
    "TelemetryAddon",
    "TelemetryStore",
    "TraceQuery",
    "TraceStore",
    "decode_spans",
    "histogram_quantile",
    "parse_envoy",
    "parse_service",
    "prometheus_config",
    "prometheus_targets",
    "summarize",
    "system_graph",
]
