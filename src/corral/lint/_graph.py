"""The declared synchronous call graph: cycles and the longest chains. Pure.

Graphs here are a system's services (a handful to a few dozen), so plain depth-first
search over simple paths is fast enough and keeps the answers exact.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence

Graph = Mapping[str, Sequence[str]]
"""Service -> the services it calls (every name a key)."""


def components(graph: Graph) -> list[list[str]]:
    """Strongly connected components (Tarjan), each sorted, in order of their first name."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle per tangle of services that call each other in a loop: the shortest one
    through the tangle's first name, as ``[a, b, ..., a]``."""
    out = []
    for component in components(graph):
        members = set(component)
        start = component[0]
        if len(component) == 1 and start not in graph.get(start, ()):
            continue
        out.append(_shortest_loop(graph, start, members))
    return out


def _shortest_loop(graph: Graph, start: str, members: set[str]) -> list[str]:
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if nxt in members and nxt not in previous and nxt != start:
                previous[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"{start} is on no cycle")  # components() said it was


def best_chain(graph: Graph, start: str, score: Callable[[Sequence[str]], float]) -> list[str]:
    """The simple path of calls from ``start`` with the highest ``score`` (ties: the first
    found, visiting callees by name)."""
    best: list[str] = [start]
    best_score = score(best)

    def walk(path: list[str], seen: set[str]) -> None:
        nonlocal best, best_score
        value = score(path)
        if value > best_score:
            best, best_score = list(path), value
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt not in seen:
                path.append(nxt)
                seen.add(nxt)
                walk(path, seen)
                seen.discard(nxt)
                path.pop()

    walk([start], {start})
    return best


def longest_chain(graph: Graph, start: str) -> list[str]:
    """The longest simple path of calls from ``start``."""
    return best_chain(graph, start, len)
