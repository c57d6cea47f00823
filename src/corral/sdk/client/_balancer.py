"""Client-side load balancing over a target's current instances."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Balancer", "Balancing"]


class Balancing(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_OUTSTANDING = "least_outstanding"


class Balancer:
    """Picks an instance URL; tracks outstanding requests per URL for least-outstanding.

    The instance list may change between picks (discovery updates): round robin keeps a
    counter modulo the current length; least outstanding ties break round robin.
    """

    def __init__(self, mode: Balancing = Balancing.ROUND_ROBIN) -> None:
        self.mode = mode
        self._next = 0
        self.outstanding: dict[str, int] = {}

    def pick(self, urls: tuple[str, ...], avoid: str | None = None) -> str:
        count = len(urls)
        start = self._next
        self._next = start + 1
        if count == 1:
            return urls[0]
        if self.mode is Balancing.ROUND_ROBIN:
            url = urls[start % count]
            if url == avoid:
                url = urls[(start + 1) % count]
                self._next += 1
            return url
        best = ""
        best_load = -1
        outstanding = self.outstanding
        for offset in range(count):
            url = urls[(start + offset) % count]
            load = outstanding.get(url, 0) + (1 if url == avoid else 0)
            if best_load < 0 or load < best_load:
                best, best_load = url, load
        return best

    def begin(self, url: str) -> None:
        self.outstanding[url] = self.outstanding.get(url, 0) + 1

    def end(self, url: str) -> None:
        left = self.outstanding.get(url, 1) - 1
        if left:
            self.outstanding[url] = left
        else:
            self.outstanding.pop(url, None)
