"""JSON views of the history, for the API and for the CLI reading a stopped system's store.

Built only from :class:`ConfigVersion`, which holds no secret value, so no view can show
one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corral.config._model import ConfigVersion, diff


def version_view(record: ConfigVersion, service: str | None = None) -> dict[str, Any]:
    """A version's configuration: per service, each variable's value and source."""
    services = {
        name: {
            key: {"value": value, "source": config.source(key)}
            for key, value in config.effective().items()
        }
        for name, config in record.services.items()
        if service is None or name == service
    }
    return {**_meta(record), "services": services}


def history_view(
    records: Sequence[ConfigVersion], service: str | None = None
) -> list[dict[str, Any]]:
    """Versions, oldest first, with what each changed (only ``service``'s, when given;
    then only the versions that changed it)."""
    out = []
    for record in records:
        changes = [c.model_dump() for c in record.changes if service in (None, c.service)]
        if service is not None and not changes and record.version != 1:
            continue
        out.append({**_meta(record), "changes": changes})
    return out


def diff_view(a: ConfigVersion, b: ConfigVersion, service: str | None = None) -> dict[str, Any]:
    """What differs from version ``a`` to version ``b``."""
    changes = [c.model_dump() for c in diff(a.services, b.services) if service in (None, c.service)]
    return {"from": a.version, "to": b.version, "changes": changes}


def _meta(record: ConfigVersion) -> dict[str, Any]:
    return {
        "version": record.version,
        "time": record.time,
        "author": record.author,
        "kind": record.kind,
        "message": record.message,
        "environment": record.environment,
    }
