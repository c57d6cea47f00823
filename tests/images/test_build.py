"""Which of a service's older images are untagged after a build (pure policy)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from corral.images._build import KEEP_YOUNGER_S, images_to_untag

NOW = datetime(2026, 12, 3, 15, 0, 0, tzinfo=UTC).timestamp()
REPO = "localhost/corral-hello-greeter"


def created(hours_ago: float, *, podman: bool = False) -> str:
    """CreatedAt as docker prints it (podman adds nanoseconds)."""
    t = datetime.fromtimestamp(NOW - hours_ago * 3600, tz=UTC)
    frac = ".123456789" if podman else ""
    return t.strftime("%Y-%m-%d %H:%M:%S") + frac + " +0000 UTC"


@pytest.mark.parametrize(
    ("ages_h", "expected"),
    [
        pytest.param([], [], id="only-the-current"),
        pytest.param([5, 6], [], id="two-older-kept-as-the-newest"),
        pytest.param([5, 6, 7, 8], ["t7", "t8"], id="beyond-the-newest-two-and-old"),
        pytest.param([0.1, 0.2, 0.5, 0.9], [], id="all-younger-than-an-hour"),
        pytest.param([0.1, 0.2, 0.5, 3], ["t3"], id="only-the-old-one-beyond-two"),
    ],
)
def test_keeps_the_newest_and_the_recent(ages_h: list[float], expected: list[str]) -> None:
    rows = [(f"{REPO}:current", created(0))]
    rows += [(f"{REPO}:t{age:g}", created(age)) for age in ages_h]
    got = images_to_untag(rows, current=f"{REPO}:current", now=NOW)
    assert got == [f"{REPO}:{name}" for name in expected]


def test_podman_and_offset_times_are_read() -> None:
    rows = [(f"{REPO}:a", created(5, podman=True)), (f"{REPO}:b", created(6, podman=True)),
            (f"{REPO}:c", created(7, podman=True)),
            (f"{REPO}:d", "2026-12-03 10:30:00 +0100 CET")]  # fmt: skip  # 09:30 UTC: 5.5 h ago
    assert images_to_untag(rows, current=f"{REPO}:x", now=NOW) == [f"{REPO}:b", f"{REPO}:c"]


def test_unreadable_creation_time_is_kept() -> None:
    rows = [(f"{REPO}:{n}", created(10 + n)) for n in range(3)] + [(f"{REPO}:odd", "yesterday")]
    assert images_to_untag(rows, current=f"{REPO}:x", now=NOW) == [f"{REPO}:2"]
    assert KEEP_YOUNGER_S >= 3600
