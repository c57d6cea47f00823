"""The kept telemetry, for ``corral traces`` and ``corral logs --grep``.

While the system runs, searches go through its API; once it is down, the kept store
(``.corral/telemetry/telemetry.db``) is read directly, so what an earlier run kept can
still be found after ``corral down``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from corral.cli._common import client, state_dir
from corral.runtime.errors import NotRunningError
from corral.telemetry import LEVELS, LogQuery, StoreReader, TraceQuery

__all__ = ["STORE_FILE", "Kept", "kept"]

STORE_FILE = Path("telemetry") / "telemetry.db"
"""Where the kept store is, under the state directory (TelemetryAddon puts it there)."""


class Kept(Protocol):
    """The kept telemetry, through the API or straight from the file."""

    def traces(self, query: TraceQuery) -> list[dict[str, Any]]: ...

    def trace(self, trace_id: str) -> dict[str, Any] | None: ...

    def logs(self, query: LogQuery) -> list[dict[str, Any]]: ...


class _Api:
    def __init__(self, api: Any) -> None:
        self.api = api

    def traces(self, query: TraceQuery) -> list[dict[str, Any]]:
        return self.api.traces(  # type: ignore[no-any-return]
            service=query.service,
            route=query.route,
            status="error" if query.errors_only else None,
            min_duration=query.min_duration_ms,
            since=query.since,
            before=query.before,
            limit=query.limit,
        )

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        return self.api.trace(trace_id)  # type: ignore[no-any-return]

    def logs(self, query: LogQuery) -> list[dict[str, Any]]:
        level = None
        if query.min_level is not None:
            level = next(name for name, rank in LEVELS.items() if rank == query.min_level)
        return self.api.search_logs(  # type: ignore[no-any-return]
            service=list(query.services),
            instance=query.instance,
            level=level,
            q=query.text,
            trace=query.trace_id,
            since=query.since,
            before=query.before_id,
            limit=query.limit,
        )


@contextmanager
def kept(file: Path | None) -> Iterator[Kept]:
    """The running system's API, or else its kept store file."""
    try:
        api = client(file)
    except NotRunningError as exc:
        path = state_dir(file) / STORE_FILE
        if not path.is_file():
            raise NotRunningError(
                f"{exc} and nothing was kept yet ({path} does not exist)"
            ) from None
        yield StoreReader(path)
        return
    with api:
        yield _Api(api)
