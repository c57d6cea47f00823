"""Which captured lines reach the kept store's search index: every line, except that only
one in ROUTINE_ACCESS_INDEXED_EVERY of the gateway's 1xx-3xx access lines does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from corral.runtime.logs import LogLine
from corral.telemetry import TelemetryAddon
from corral.telemetry._addon import GATEWAY_SERVICE, ROUTINE_ACCESS_INDEXED_EVERY


class Index:
    """Stands in for the store's writer: what was handed over to be indexed."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def put_logs(self, records: Sequence[Any]) -> None:
        self.lines.extend(r.line for r in records)


def access(status: int | str) -> str:
    return (
        '{"timestamp":"2026-12-03T15:00:00.000Z","level":"info","event":"request",'
        f'"method":"GET","path":"/x","status":{status},"duration_ms":1}}'
    )


def indexed(service: str, lines: list[str]) -> list[str]:
    addon = TelemetryAddon()
    addon.store = Index()  # type: ignore[assignment]
    for n, line in enumerate(lines):
        addon.capture_log(LogLine(float(n), service, f"{service}-1", "stdout", line))
    return addon.store.lines  # type: ignore[attr-defined, no-any-return]


N = ROUTINE_ACCESS_INDEXED_EVERY


@pytest.mark.parametrize(
    ("service", "line", "expected"),
    [
        pytest.param(GATEWAY_SERVICE, access(200), 3, id="2xx-sampled"),
        pytest.param(GATEWAY_SERVICE, access(101), 3, id="1xx-sampled"),
        pytest.param(GATEWAY_SERVICE, access(304), 3, id="3xx-sampled"),
        pytest.param(GATEWAY_SERVICE, access('"204"'), 3, id="quoted-status-sampled"),
        pytest.param(GATEWAY_SERVICE, access(404), 3 * N, id="4xx-all"),
        pytest.param(GATEWAY_SERVICE, access(503), 3 * N, id="5xx-all"),
        pytest.param(GATEWAY_SERVICE, access(0), 3 * N, id="reset-all"),
        pytest.param(GATEWAY_SERVICE, "[info] envoy says 200", 3 * N, id="envoy-own-all"),
        pytest.param("front", access(200), 3 * N, id="a-service-all"),
    ],
)
def test_only_routine_gateway_access_lines_are_sampled(
    service: str, line: str, expected: int
) -> None:
    assert len(indexed(service, [line] * (3 * N))) == expected


def test_the_first_routine_line_is_indexed_and_errors_between_are_kept() -> None:
    lines = [access(200)] * N + [access(500)] + [access(200)] * N
    got = indexed(GATEWAY_SERVICE, lines)
    assert got == [access(200), access(500), access(200)]
