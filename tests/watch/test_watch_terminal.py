"""What `corral up --watch` prints for each watch event."""

from __future__ import annotations

from pathlib import Path

from corral.cli._common import console
from corral.cli._watch import show
from corral.watch import (
    Changes,
    Located,
    ManifestChanged,
    ManifestOutcome,
    Reloaded,
    ReloadFailed,
    Reloading,
    WatchEvent,
)


def printed(event: WatchEvent) -> str:
    with console.capture() as captured:
        show(event)
    return captured.get()


def test_each_reload_shows_its_duration() -> None:
    """A reload: what changed, then the service and how long it took."""
    files = {"greeter": (Path("/srv/greeter/app.py"),), "front": (Path("a"), Path("b"))}
    changes = Changes(services=("greeter", "front"), manifest=False, files=files)
    assert printed(Reloading(changes)) == (
        "↻ greeter (app.py changed)\n↻ front (2 files changed)\n"
    )
    assert printed(Reloaded("greeter", 0.8421)) == "✔ greeter reloaded in 0.84s\n"


def test_a_failed_reload_shows_file_and_line_once() -> None:
    """The located error, and that the old instances keep serving."""
    located = Located("SyntaxError: invalid syntax", Path("/srv/greeter/app.py"), 23)
    out = printed(ReloadFailed("greeter", 1.2, "exited with code 1", located))
    assert out.startswith("✘ greeter: /srv/greeter/app.py:23: SyntaxError: invalid syntax\n")
    assert "the old instances keep serving" in out
    assert out.count("SyntaxError") == 1


def test_manifest_outcomes_are_shown_with_their_errors() -> None:
    """An invalid manifest says the system runs on; a valid one lists what changed."""
    bad = printed(ManifestChanged(ManifestOutcome(error="corral.yaml:6:5: bad"), 0.1))
    assert "the manifest is invalid; the system runs on unchanged" in bad
    assert "corral.yaml:6:5: bad" in bad
    good = ManifestOutcome(changed=("greeter: scaled to 3",), notes=("events changed",))
    out = printed(ManifestChanged(good, 0.5))
    assert "manifest applied in 0.50s: greeter: scaled to 3" in out
    assert "! events changed" in out
