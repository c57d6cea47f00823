"""A running system's registry as it changes, for a command that waits on it.

``corral up -d`` asked for the registry twenty times a second while the system started:
it noticed the last instance ready up to ~0.15 s late (a request to a control plane
busy starting, then a 50 ms sleep), and every request cost that control plane CPU. The
API pushes each new snapshot as a server-sent event instead; a thread reads them (the
client is blocking) so that the command keeps redrawing its progress between two.
"""

from __future__ import annotations

import contextlib
import queue
import threading

from corral.api import ApiClient
from corral.runtime.registry import Snapshot


class RegistryFeed:
    """Snapshots pushed by the API at ``url``, newest first, read on a thread of its own."""

    def __init__(self, url: str, token: str) -> None:
        self._api = ApiClient(url, token)
        self._snapshots: queue.Queue[Snapshot | None] = queue.Queue()
        self.ended = False
        """The stream closed (the control plane stopped, or answered with an error)."""
        self._thread = threading.Thread(target=self._follow, name="corral-registry", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for snapshot in self._api.registry_snapshots():
                self._snapshots.put(snapshot)
        except Exception:  # noqa: S110 - the waiting command's own checks say what failed
            pass
        finally:
            self._snapshots.put(None)

    def next(self, timeout: float) -> Snapshot | None:
        """The newest snapshot that arrived, waiting up to ``timeout`` s for one; None
        when none came (or the stream ended: see ``ended``)."""
        newest: Snapshot | None = None
        try:
            item = self._snapshots.get(timeout=timeout)
            while True:
                if item is None:
                    self.ended = True
                else:
                    newest = item
                item = self._snapshots.get_nowait()
        except queue.Empty:
            return newest

    def close(self) -> None:
        # Closing the client ends the thread's blocking read (daemon: never waited for).
        with contextlib.suppress(Exception):
            self._api.close()
