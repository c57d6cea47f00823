"""Readable merged log lines and --since parsing."""

from __future__ import annotations

import json

import pytest

from corral.cli._logs import colour_for, format_line, parse_since


def test_json_lines_are_unpacked_into_level_event_and_fields() -> None:
    """A structlog JSON line shows level, event and the other fields as key=value."""
    line = json.dumps(
        {"event": "request", "level": "info", "service": "web", "status": 200, "path": "/x"}
    )
    text = format_line({"t": 0, "instance": "web-1", "line": line}, colour="cyan").plain
    assert "web-1" in text
    assert "info" in text
    assert "request" in text
    assert "status=200" in text
    assert "path=/x" in text
    assert "service=" not in text


def test_plain_lines_are_shown_as_they_are() -> None:
    """Non-JSON output is printed unchanged."""
    text = format_line({"t": 0, "instance": "w-1", "line": "hello {not json"}, colour="red").plain
    assert text.endswith("hello {not json")


def test_colours_are_stable_per_service() -> None:
    """The same service always gets the same colour; neighbours differ."""
    order = ["a", "b", "c"]
    assert colour_for("a", order) == colour_for("a", order)
    assert colour_for("a", order) != colour_for("b", order)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", 970.0), ("10m", 400.0), ("1h", -2600.0), ("500ms", 999.5), ("123.5", 123.5)],
)
def test_since_accepts_durations_and_timestamps(text: str, expected: float) -> None:
    """--since takes a duration back from now, or a Unix time."""
    assert parse_since(text, now=1000.0) == pytest.approx(expected)


def test_since_rejects_nonsense() -> None:
    """A bad --since is a clear error."""
    with pytest.raises(ValueError, match="invalid --since"):
        parse_since("yesterday", now=0)


def test_long_instance_names_stay_separated_from_the_time() -> None:
    """An instance id longer than the column still has a space before the time."""
    text = format_line({"t": 0, "instance": "corral-gateway-1", "line": "x"}, colour="red").plain
    assert text.startswith("corral-gateway-1 ")
