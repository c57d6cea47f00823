"""Experiment files: what loads, and every mistake located (file, line, key) as a
manifest's are."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.chaos import load, parse
from corral.manifest import ManifestError

GOOD = """\
title: matching paused, rides wait then match
hypothesis:
  during: true
  every: 500ms
  recover_within: 20s
  probes:
    - {type: ready}
    - {type: error-rate, target: gateway, max: 0.01, window: 30s}
    - {type: latency, target: rides, route: "GET /rides/{id}", quantile: p95, max: 500ms}
    - {type: http, url: /healthz, status: [200, 204], body_contains: ok}
    - {type: command, run: [python, -c, "pass"], exit: 0, timeout: 10s}
    - {type: dead-letters, max: 0}
method:
  - {action: kill, target: rides, repeat: 3, every: 2s}
  - action: parallel
    steps:
      - {action: pause, target: matching, duration: 5s}
      - {action: gateway, target: payments, abort: 503, percent: 30, duration: 5s}
  - {action: wait, duration: 1s}
rollbacks:
  - {action: command, run: ["true"]}
"""


def test_a_whole_experiment_loads_with_durations_in_seconds() -> None:
    """Every probe and step kind the format has, read into typed values."""
    experiment = parse(GOOD, "x.yaml")
    assert experiment.hypothesis.every == 0.5
    assert experiment.hypothesis.probes[2].max == 0.5
    assert experiment.hypothesis.probes[3].status == [200, 204]
    kill, parallel, wait = experiment.method
    assert (kill.repeat, kill.every, kill.planned) == (3, 2.0, 4.0)
    assert parallel.planned == 5.0
    assert wait.duration == 1.0
    assert kill.label == "kill rides x3 every 2s"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "title: t\nhypothesis:\n  probes:\n    - {type: ready, servics: [a]}\n"
            "method:\n  - {action: wait, duration: 1s}\n",
            "x.yaml:4:21: hypothesis.probes[0].servics: unknown key 'servics' "
            "(did you mean 'services'?)",
        ),
        (
            "title: t\nhypothesis:\n  probes: [{type: ready}]\nmethod:\n"
            "  - {action: kill, target: a, duration: 5s}\n",
            "x.yaml:5:5: method[0]: 'kill' does not take duration",
        ),
        (
            "title: t\nhypothesis:\n  probes: [{type: ready}]\nmethod:\n"
            "  - {action: pause, target: a, duration: 2h}\n",
            "x.yaml:5:32: method[0].duration: must be at most 3600",
        ),
        (
            "title: t\nhypothesis:\n  probes: [{type: error-rate, target: gateway, max: 5}]\n"
            "method:\n  - {action: wait, duration: 1s}\n",
            "an error rate's max is a fraction",
        ),
        (
            "title: t\nhypothesis:\n  probes: [{type: ready}]\nmethod:\n"
            "  - {action: gateway, target: a, duration: 1s}\n",
            "'gateway' needs abort (a status), delay, or both",
        ),
        (
            "title: t\nhypothesis:\n  probes: [{type: ready}]\nmethod:\n  - {action: explode}\n",
            "x.yaml:5:6: method[0].action: Input should be 'kill'",
        ),
        (
            "title: t\nhypothesis:\n  probes: [{type: ready}]\nmethod:\n"
            "  - {action: pause, target: a, duration: 1h, repeat: 5}\n",
            "over the 14400s limit",
        ),
        ("title: t\nmethod: []\n", "hypothesis"),
        ("- a list\n", "an experiment must be a mapping"),
        ("   \n", "the experiment is empty"),
        ("title: [unclosed\n", "x.yaml:2:1"),
    ],
)
def test_mistakes_are_located(text: str, expected: str) -> None:
    """A typo, a key a kind does not take, a duration over its limit, an unknown
    action: each a line with the file, line, column and key path."""
    with pytest.raises(ManifestError) as caught:
        parse(text, "x.yaml")
    assert expected in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    """Three mistakes in one file: three lines, not the first one only."""
    text = (
        "title: t\nhypothesis:\n  probes:\n    - {type: http}\n    - {type: pong}\n"
        "method:\n  - {action: kill}\n"
    )
    with pytest.raises(ManifestError) as caught:
        parse(text, "x.yaml")
    assert len(caught.value.diagnostics) == 3


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    """No traceback for a path that is not there."""
    with pytest.raises(ManifestError, match="cannot read the experiment"):
        load(tmp_path / "nope.yaml")


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    """A huge file is refused at its first 256 KiB."""
    path = tmp_path / "big.yaml"
    path.write_text("title: " + "x" * 300_000)
    with pytest.raises(ManifestError, match="over 256 KiB"):
        load(path)
