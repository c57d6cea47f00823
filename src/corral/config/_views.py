"""Typed views of the history, for the API (its response models), the client that parses
its answers, the CLI reading a stopped system's store, and the dashboard.

Built only from :class:`ConfigVersion`, which holds no secret value, so no view can show
one. Their JSON (``model_dump(mode="json", by_alias=True)``) is what ``corral config
show/history/diff --json`` print.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from corral.config._model import Change, ConfigVersion, diff
from corral.config._rollout import Report

__all__ = [
    "HISTORY",
    "ConfigDiff",
    "ConfigHistoryEntry",
    "ConfigInstance",
    "ConfigShown",
    "ConfigValue",
    "diff_view",
    "history_view",
    "instances_view",
    "version_view",
]


class _Meta(BaseModel):
    version: int
    time: float = Field(description="Unix time the version was made.")
    author: str
    kind: str = Field(description="up, set, unset, apply, rollback or restore")
    message: str
    environment: str | None = Field(description="The overlay in effect (`corral up --env`).")


class ConfigValue(BaseModel):
    value: str = Field(description="The value; a secret as `secret fp:...`, never its value.")
    source: str = Field(description="Which layer it comes from (file:line:col, a set, a secret).")


class ConfigShown(_Meta):
    """``GET /v1/config``: a version's configuration, per service and variable."""

    services: dict[str, dict[str, ConfigValue]]


class ConfigHistoryEntry(_Meta):
    """One version of ``GET /v1/config/history`` and what it changed."""

    changes: list[Change]


class ConfigDiff(BaseModel):
    """``GET /v1/config/diff``: what differs from version ``from`` to version ``to``."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    from_: int = Field(alias="from")
    to: int
    changes: list[Change]


class ConfigInstance(BaseModel):
    """``GET /v1/config/instances``: the version a running instance took, and how fast."""

    instance: str
    service: str
    version: int | None = Field(description="The version it last reported; null: none yet.")
    outcome: Literal["applied", "restart", "rejected"] | None = None
    reported_at: float | None = Field(default=None, description="Unix time of that report.")
    latency: float | None = Field(
        default=None,
        description="Seconds from the version's publication to the instance's report, for "
        "a version it took while running (null for the version it started with).",
    )
    current: bool = Field(description="Whether it reported the latest version of its service.")


HISTORY = TypeAdapter(list[ConfigHistoryEntry])
"""Parses and dumps a history (a JSON list)."""


def _meta(record: ConfigVersion) -> dict[str, object]:
    return {
        "version": record.version,
        "time": record.time,
        "author": record.author,
        "kind": record.kind,
        "message": record.message,
        "environment": record.environment,
    }


def version_view(record: ConfigVersion, service: str | None = None) -> ConfigShown:
    """A version's configuration: per service, each variable's value and source."""
    services = {
        name: {
            key: ConfigValue(value=value, source=config.source(key))
            for key, value in config.effective().items()
        }
        for name, config in record.services.items()
        if service is None or name == service
    }
    return ConfigShown.model_validate({**_meta(record), "services": services})


def history_view(
    records: Sequence[ConfigVersion], service: str | None = None
) -> list[ConfigHistoryEntry]:
    """Versions, oldest first, with what each changed (only ``service``'s, when given;
    then only the versions that changed it)."""
    out = []
    for record in records:
        changes = [c for c in record.changes if service in (None, c.service)]
        if service is not None and not changes and record.version != 1:
            continue
        out.append(ConfigHistoryEntry.model_validate({**_meta(record), "changes": changes}))
    return out


def diff_view(a: ConfigVersion, b: ConfigVersion, service: str | None = None) -> ConfigDiff:
    """What differs from version ``a`` to version ``b``."""
    changes = [c for c in diff(a.services, b.services) if service in (None, c.service)]
    return ConfigDiff(from_=a.version, to=b.version, changes=changes)


def instances_view(
    instances: Iterable[tuple[str, str]],
    reports: Mapping[str, Report],
    received: Mapping[str, tuple[float, float | None]],
    latest: Mapping[str, int],
) -> list[ConfigInstance]:
    """Each ``(service, instance)`` with the version it reported, when, and the
    propagation latency; ``latest``: per service, the version its watch last sent."""
    out = []
    for service, instance in sorted(instances):
        report = reports.get(instance)
        version = None if report is None else report.version
        outcome = None if report is None else report.outcome
        at, latency = received.get(instance, (None, None))
        out.append(
            ConfigInstance(
                instance=instance,
                service=service,
                version=version,
                outcome=outcome,
                reported_at=at,
                latency=None if latency is None else round(latency, 6),
                current=version is not None and version >= latest.get(service, 0),
            )
        )
    return out
