"""What both sides of the bus agree on: subjects, stream and consumer names, and their
JetStream configurations.

The SDK publishes and consumes with these; the control plane's broker provisions exactly
these streams and consumers (and the exporters name them in alerts). One definition,
read by both; the SDK still imports nothing of the control plane.
"""

from corral.sdk.events._nats import consumer_config, stream_config, system_stream_configs
from corral.sdk.events._topology import (
    consumers_for,
    dlq_stream,
    replay_consumer,
    stream_name,
    subject,
)

__all__ = [
    "consumer_config",
    "consumers_for",
    "dlq_stream",
    "replay_consumer",
    "stream_config",
    "stream_name",
    "subject",
    "system_stream_configs",
]
