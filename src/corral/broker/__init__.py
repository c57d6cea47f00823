"""The event bus in the control plane: the embedded nats-server, provisioning of streams
and consumers from the plan, dead-letter operations and the AsyncAPI catalog.

``BrokerAddon`` plugs into the local runtime; the CLI wires ``dlq_*`` and ``catalog``
(plain async functions taking a NATS URL) into ``corral events``. The embedded server
admits only the system's own users (_credentials.py); :func:`control_url` gives the
control plane's URL, credentials included, to tools of the user who ran ``corral up``.
"""

from corral.broker._addon import BrokerAddon
from corral.broker._catalog import build_catalog, catalog, payload_schemas
from corral.broker._credentials import control_url, without_credentials
from corral.broker._dlq import dlq_list, dlq_purge, dlq_replay, dlq_show
from corral.broker._overview import bus_overview
from corral.broker._provision import Drift, ProvisionReport, provision
from corral.broker._server import BrokerError, component_plan, find_binary, server_config
from corral.broker._topology import topic_config, topology

__all__ = [
    "BrokerAddon",
    "BrokerError",
    "Drift",
    "ProvisionReport",
    "build_catalog",
    "bus_overview",
    "catalog",
    "component_plan",
    "control_url",
    "dlq_list",
    "dlq_purge",
    "dlq_replay",
    "dlq_show",
    "find_binary",
    "payload_schemas",
    "provision",
    "server_config",
    "topic_config",
    "topology",
    "without_credentials",
]
