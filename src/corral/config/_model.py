"""A service's configuration as layers, a version of the whole system's, and the pure
operations on them (set, unset, a new manifest, diff).

Layers, lowest first (a later one wins for the same variable):

1. the manifest's ``env:``;
2. the environment overlay's ``env:`` (``corral.<env>.yaml``), merged over it;
3. runtime changes (``corral config set``), kept until ``corral config unset``.

Layers 1 and 2 arrive already merged as the Plan's ``env`` and are the *base*; each
variable keeps the file:line:col it was written at. Secrets are a layer apart: their
variables can be neither set at run time nor plain values, and a version holds only their
reference and a fingerprint of the value, never the value. By construction nothing in
these models can carry a secret's value, so nothing persisted or served from them can.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from corral import contract
from corral.config._errors import InvalidChangeError, UndeclaredSettingError
from corral.manifest import check_env_name

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Secret(BaseModel):
    """A secret as history may show it: where its value comes from and a fingerprint."""

    model_config = _FROZEN

    ref: str = Field(description="env:NAME or file:PATH")
    fingerprint: str = Field(description="fp: and a keyed hash of the value (see _secrets)")


class Override(BaseModel):
    """A value set at run time, with the version and person that set it."""

    model_config = _FROZEN

    value: str
    version: int
    author: str


class ServiceConfig(BaseModel):
    """One service's configuration at one version."""

    model_config = _FROZEN

    base: dict[str, str] = Field(default_factory=dict)
    """The manifest's env with the overlay's merged over it."""
    sources: dict[str, str] = Field(default_factory=dict)
    """Where each base variable is written (``corral.prod.yaml:6:7``)."""
    overrides: dict[str, Override] = Field(default_factory=dict)
    secrets: dict[str, Secret] = Field(default_factory=dict)

    @property
    def values(self) -> dict[str, str]:
        """The plain variables an instance gets."""
        return {**self.base, **{key: o.value for key, o in self.overrides.items()}}

    def effective(self) -> dict[str, str]:
        """Every variable as people may see it: plain values, secrets as fingerprints.
        Two versions give a service the same configuration when these are equal."""
        shown = self.values
        shown.update({key: f"secret {s.fingerprint}" for key, s in self.secrets.items()})
        return dict(sorted(shown.items()))

    def source(self, key: str) -> str:
        """Which layer a variable's value comes from, for people."""
        if key in self.secrets:
            return f"secret {self.secrets[key].ref}"
        if key in self.overrides:
            override = self.overrides[key]
            return f"corral config set (version {override.version}, {override.author})"
        return self.sources.get(key, "manifest")

    def layers(self) -> ServiceConfig:
        """The same configuration without its runtime layer."""
        return self.model_copy(update={"overrides": {}})


class Change(BaseModel):
    """One variable of one service that differs between two versions."""

    model_config = _FROZEN

    service: str
    key: str
    old: str | None = None
    """The value before (a secret as ``secret fp:...``); None when it was not set."""
    new: str | None = None
    """The value after; None when it is gone."""


class ConfigVersion(BaseModel):
    """The configuration of every service after one change, and what that change was."""

    model_config = _FROZEN

    version: int
    time: float
    author: str
    message: str = ""
    kind: str = Field(description="up, set, unset, apply, rollback or restore")
    environment: str | None = None
    """The overlay in effect (``corral up --env``) when this version was made."""
    services: dict[str, ServiceConfig]
    changes: list[Change] = Field(default_factory=list)
    """What differs from the version before."""


def diff(before: Mapping[str, ServiceConfig], after: Mapping[str, ServiceConfig]) -> list[Change]:
    """Every variable whose value differs, by service then variable name."""
    changes = []
    for service in sorted(set(before) | set(after)):
        old = before[service].effective() if service in before else {}
        new = after[service].effective() if service in after else {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changes.append(Change(service=service, key=key, old=old.get(key), new=new.get(key)))
    return changes


def changed_services(
    before: Mapping[str, ServiceConfig], after: Mapping[str, ServiceConfig]
) -> list[str]:
    """Services whose instances would get a different configuration."""
    return sorted({change.service for change in diff(before, after)})


def set_values(
    services: Mapping[str, ServiceConfig],
    service: str,
    values: Mapping[str, str],
    *,
    version: int,
    author: str,
) -> dict[str, ServiceConfig]:
    """``corral config set``: runtime values for ``service`` (InvalidChangeError if a
    variable may not be set: not a variable name, owned by Corral, or a secret)."""
    current = _service(services, service)
    for key in sorted(values):
        try:
            check_env_name(key)
        except ValueError as exc:
            raise InvalidChangeError(str(exc)) from None
        if key in contract.RESERVED:
            raise InvalidChangeError(f"{key} is set by Corral for each instance")
        if key in current.secrets:
            raise InvalidChangeError(
                f"{key} is a secret of {service} ({current.secrets[key].ref}): change it where "
                "it lives, then run `corral config apply`; a value given here would be kept "
                "in the history"
            )
    overrides = dict(current.overrides)
    for key, value in values.items():
        overrides[key] = Override(value=value, version=version, author=author)
    return {**services, service: current.model_copy(update={"overrides": _sorted(overrides)})}


OPEN_CONTRACT = frozenset(contract.ALL_VARIABLES) - contract.RESERVED
"""Contract variables a service's configuration may point elsewhere (its database, the
bus, telemetry, the log format): settings of every service."""


def declared(config: ServiceConfig, reported: Collection[str]) -> list[str]:
    """The settings of a service: what its layers set (the manifest's ``env:`` with the
    overlay's, its secrets, what was set at run time), the contract variables it may
    point elsewhere, and ``reported``, the variables its running instances' settings
    models read."""
    known = set(config.base) | set(config.secrets) | set(config.overrides)
    return sorted(known | OPEN_CONTRACT | set(reported))


def check_declared(
    config: ServiceConfig, service: str, keys: Iterable[str], reported: Collection[str]
) -> None:
    """UndeclaredSettingError for the keys that are not settings of ``service``
    (``reported`` is upper case: a settings model reads its variables case-insensitively)."""
    settings = declared(config, reported)
    unknown = sorted(k for k in keys if k not in settings and k.upper() not in reported)
    if unknown:
        suggestions = {k: difflib.get_close_matches(k, settings, n=3) for k in unknown}
        # The open contract variables are everyone's: listed, they would hide the
        # service's own settings.
        own = [name for name in settings if name not in OPEN_CONTRACT]
        raise UndeclaredSettingError(
            service, unknown, {k: v for k, v in suggestions.items() if v}, own
        )


def unset_values(
    services: Mapping[str, ServiceConfig], service: str, keys: Iterable[str]
) -> dict[str, ServiceConfig]:
    """``corral config unset``: drop runtime values; the manifest's value (if any) applies
    again. A variable with no runtime value is an InvalidChangeError naming its source."""
    current = _service(services, service)
    overrides = dict(current.overrides)
    for key in keys:
        if key in overrides:
            del overrides[key]
        elif key in current.base or key in current.secrets:
            raise InvalidChangeError(
                f"{key} of {service} comes from {current.source(key)}, not from "
                "`corral config set`: change it there, then run `corral config apply`"
            )
        else:
            raise InvalidChangeError(f"{service} has no variable {key}")
    return {**services, service: current.model_copy(update={"overrides": overrides})}


def rebase(
    services: Mapping[str, ServiceConfig], layers: Mapping[str, ServiceConfig]
) -> dict[str, ServiceConfig]:
    """A new manifest (``corral config apply``, ``corral up``): its layers under the runtime
    values that still apply. A service gone from the manifest takes its runtime values
    with it; a runtime value for a variable that became a secret is dropped."""
    out = {}
    for name, layer in layers.items():
        kept = services[name].overrides if name in services else {}
        overrides = {k: o for k, o in kept.items() if k not in layer.secrets}
        out[name] = layer.model_copy(update={"overrides": overrides})
    return out


def _service(services: Mapping[str, ServiceConfig], service: str) -> ServiceConfig:
    if service not in services:
        known = ", ".join(sorted(services)) or "none"
        raise InvalidChangeError(f"no service named {service!r} (services: {known})")
    return services[service]


def _sorted(overrides: Mapping[str, Override]) -> dict[str, Override]:
    return dict(sorted(overrides.items()))
