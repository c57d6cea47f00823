"""Who may use a system's embedded event bus: per-system users and passwords.

Every ``corral up`` generates them afresh (so a run's credentials die with it): one user
for the control plane's own clients (provisioning, the dashboard's view of the bus,
``corral events``) and one per service that produces or consumes a topic. Instances of
other services, Envoy and nats-server itself get none. A service user may do what the
SDK does (publish, consume, create a missing stream or consumer, read and replay dead
letters) but not delete, purge or reconfigure streams or delete consumers: that is the
control plane's.

Credentials travel the way nats.py and the nats CLI read them, inside the URL
(``nats://user:password@host:port``): the SDK already treats a password in ``NATS_URL``
as a secret and redacts it from every log line. Outside an instance's environment a URL
is shown only without them (:func:`without_credentials`).

On disk, in ``<state>/nats`` (mode 0700): ``nats-server.conf`` (mode 0600) holds the
server's users, ``bus.json`` (mode 0600) the control plane's URL, which ``corral events``
reads (:func:`control_url`) from another process. Passwords are written in clear in
the server's file: they are 256-bit random, so a hash (bcrypt) would protect nothing
that the file's mode does not already, and would cost a bcrypt check per connection.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from corral import contract

CONTROL_USER = f"{contract.COMPONENT_PREFIX}control"
"""The control plane's user: no service can take its name (``corral-`` is reserved)."""

SERVICE_DENIED = (
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.UPDATE.>",
    "$JS.API.CONSUMER.DELETE.>",
)
"""JetStream API subjects a service may not publish to: what only provisioning and
``corral events dlq purge`` need. The SDK creates a missing stream or consumer, never
changes or removes one."""

CONFIG_FILE = "nats-server.conf"
BUS_FILE = "bus.json"


@dataclass(frozen=True)
class BusUser:
    name: str
    password: str
    denied: tuple[str, ...] = ()
    """Subjects this user may not publish to (nats-server ``permissions.publish.deny``)."""

    def __repr__(self) -> str:  # never the password, in a traceback or a log
        return f"BusUser({self.name!r})"


@dataclass(frozen=True)
class BusCredentials:
    control: BusUser
    services: tuple[BusUser, ...]

    @classmethod
    def generate(cls, services: Iterable[str]) -> BusCredentials:
        """New random passwords: the control plane's and one per service named."""
        return cls(
            control=BusUser(CONTROL_USER, secrets.token_urlsafe(32)),
            services=tuple(
                BusUser(name, secrets.token_urlsafe(32), SERVICE_DENIED)
                for name in sorted(set(services))
            ),
        )

    @property
    def users(self) -> tuple[BusUser, ...]:
        return (self.control, *self.services)

    def service(self, name: str) -> BusUser | None:
        return next((user for user in self.services if user.name == name), None)


def with_credentials(url: str, user: BusUser) -> str:
    """``nats://host:port`` -> ``nats://user:password@host:port``."""
    parts = urlsplit(url)
    userinfo = f"{quote(user.name, safe='')}:{quote(user.password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{_host(parts.netloc)}"))


def without_credentials(url: str) -> str:
    """The URL to show: any user, password or token removed."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=_host(parts.netloc)))


def _host(netloc: str) -> str:
    return netloc.rpartition("@")[2]


def prepare_store(store: Path) -> None:
    """The broker's directory, readable by the user who runs ``corral up`` only."""
    store.mkdir(parents=True, exist_ok=True)
    store.chmod(0o700)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically into a file of mode 0600 (created so: never readable by
    others, not even for a moment)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def record_control_url(store: Path, url: str) -> None:
    """Keep the control plane's URL (credentials included) for ``corral events``."""
    write_private(store / BUS_FILE, json.dumps({"url": url}))


def forget_control_url(store: Path) -> None:
    (store / BUS_FILE).unlink(missing_ok=True)


def control_url(state_dir: Path) -> str | None:
    """The URL, with the control plane's credentials, of the event bus of the system
    running from ``state_dir`` (its ``.corral``); None when it has none or is not
    running. For ``corral events dlq ...`` and other tools of the user who ran it."""
    try:
        data = json.loads((state_dir / "nats" / BUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    url = data.get("url") if isinstance(data, dict) else None
    return url if isinstance(url, str) else None
