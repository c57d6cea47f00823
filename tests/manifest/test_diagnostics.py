"""How diagnostics echo what a manifest holds: whole numbers in full, long values cut with
their length, control and invisible characters escaped, whoever wrote the message."""

from __future__ import annotations

import pytest

from corral.manifest import Diagnostic, ManifestError, parse
from corral.manifest._diagnostics import MAX_TEXT, format_path, shown

SHOWN = [
    (10**32, "100000000000000000000000000000000"),
    (-(10**20), "-100000000000000000000"),
    (2.5, "2.5"),
    (True, "true"),
    (None, "null"),
    ({"a": 1}, "a mapping"),
    ([1], "a list"),
    ("ready\x1b[2J", "'ready\\x1b[2J'"),
    ("sh\u202eop", "'sh\\u202eop'"),
    ("x" * 61, f"'{'x' * 60}'… (61 characters)"),
    (10**70, f"{'1' + '0' * 59}… (71 digits)"),
]


@pytest.mark.parametrize(("value", "expected"), SHOWN, ids=[e for _, e in SHOWN])
def test_shown(value: object, expected: str) -> None:
    """A value is echoed as written, escaped and cut where it must be."""
    assert shown(value) == expected


def test_a_rendered_diagnostic_escapes_what_its_message_holds() -> None:
    """Whatever built the message (a validator, YAML, another package), the rendered line
    holds no control character and no message longer than the cut."""
    raw = Diagnostic("a\nb.yaml", 1, 2, ("services", "\x1b[2J"), "got \x1b]0;x\x07" + "y" * 5000)
    text = str(raw)
    assert text.isprintable()
    assert text.startswith("a\\nb.yaml:1:2: services.\\x1b[2J: got \\x1b]0;x\\x07yyy")
    assert len(text) < MAX_TEXT + 100


def test_a_deep_path_shows_its_ends() -> None:
    """A key path of 60 parts is cut in the middle, keeping where it starts and ends."""
    assert format_path(("events", "topics", "t", *([0] * 60))) == (
        "events.topics.t[0][0][0][0][0]…[0][0][0]"
    )


def test_a_long_value_in_another_packages_message_is_cut() -> None:
    """The gateway's own message for a bad regex repeats the value: the line stays short."""
    text = (
        "name: shop\nservices:\n  web:\n    command: python app.py\n"
        "gateway:\n  routes:\n    - match: {regex: '(" + "a" * 5000 + "'}\n      service: web\n"
    )
    with pytest.raises(ManifestError) as caught:
        parse(text, "corral.yaml")
    (line,) = str(caught.value).splitlines()[1:]
    assert line.startswith("  corral.yaml:7:15: gateway.routes[0].match.regex: invalid regular")
    assert len(line) < MAX_TEXT + 100
