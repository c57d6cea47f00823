"""``corral up --watch`` and ``corral watch``: saved files reload the services they
belong to, with zero failed requests (see docs/watch.md).

``SourceMap`` (pure) maps files to services; ``Watcher`` runs the loop against a
``Target`` (``ApiTarget``: the control API); ``locate`` finds the file and line of new code's error.
"""

from corral.watch._api_target import ApiTarget
from corral.watch._located import Located, locate
from corral.watch._sources import Changes, SourceMap
from corral.watch._watcher import (
    ManifestChanged,
    ManifestOutcome,
    Reloaded,
    ReloadFailed,
    Reloading,
    ReloadOutcome,
    Target,
    Watcher,
    WatchEvent,
    WatchProblem,
)

__all__ = [
    "ApiTarget",
    "Changes",
    "Located",
    "ManifestChanged",
    "ManifestOutcome",
    "ReloadFailed",
    "ReloadOutcome",
    "Reloaded",
    "Reloading",
    "SourceMap",
    "Target",
    "WatchEvent",
    "WatchProblem",
    "Watcher",
    "locate",
]
