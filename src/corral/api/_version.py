"""Paths shared by server and client without importing either: the version prefix and
the addresses instances and browsers are given."""

API_VERSION = "v1"

DASHBOARD_PATH = "/dashboard/"
"""Where the API serves the dashboard."""

OTLP_BASE = "/otlp"
"""Base of the OTLP/HTTP trace receiver: instances' OTEL_EXPORTER_OTLP_ENDPOINT is the
API's address plus this, and the exporter appends ``/v1/traces``."""
