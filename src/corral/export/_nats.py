"""nats-server in a container: the embedded server's own configuration (JetStream,
``sync_interval: always``), listening on every interface, storing in its volume. Pure."""

from __future__ import annotations

from corral.broker import server_config
from corral.export._model import DATA_DIR, NATS_EXPORTER_PORT, NATS_MONITOR_PORT, NATS_PORT
from corral.plan import Plan

CONFIG_PATH = "/etc/nats/nats-server.conf"
READINESS_PATH = "/healthz?js-enabled-only=true"
LIVENESS_PATH = "/healthz"


def render_nats_config(plan: Plan) -> str:
    return server_config(
        port=NATS_PORT,
        monitor_port=NATS_MONITOR_PORT,
        store_dir=f"{DATA_DIR}/jetstream",
        name=f"corral-{plan.system}",
        host="0.0.0.0",
    )


def nats_args() -> list[str]:
    """The nats image's entrypoint runs nats-server with these."""
    return ["--config", CONFIG_PATH]


def exporter_args(monitor_url: str) -> list[str]:
    """prometheus-nats-exporter: server and JetStream (streams, consumers) metrics, among
    them ``jetstream_stream_total_messages`` of the dead-letter stream."""
    return [f"-port={NATS_EXPORTER_PORT}", "-varz", "-jsz=all", monitor_url]
