"""Captured output of every instance: one JSON-lines file per instance, plus live follow.

``<state_dir>/logs/<instance>.log`` holds one JSON object per line::

    {"t": 1718000000.123, "service": "web", "instance": "web-1", "stream": "stdout", "line": "..."}

The runtime reads each instance's stdout and stderr pipes with :meth:`LogStore.capture`,
which timestamps every line on arrival, writes it to the file and fans it out in memory to
followers (no polling of files). It reads what the pipe holds at once and stores those lines
together (one arrival time, one ``write``), because a chatty instance (Envoy's access log
writes a line per request) otherwise costs the orchestrator a read, a coroutine step, a
dataclass, a ``json`` encoding and a write per line: measured at 10% of the gateway's
throughput (bench/gateway.py, ``gateway_orchestrator_logs_vs_gateway``).

Files outlive the run, so ``corral logs`` works after ``corral down`` too; a new run
appends to them.

Files are appended across runs, so each ``corral up`` writes a run marker first
(:meth:`LogStore.mark_run`: its time and run id, service :data:`RUN_SERVICE`); every
reader (``corral logs``, ``/v1/logs``, the dashboard) gets markers whatever services it
is filtered to, so one run's lines are never read as the next one's.

Secrets never reach a file or a reader: the runtime tells :attr:`LogStore.secrets` the
values it hands each instance (before spawning it), and every line of that instance is
redacted on arrival, from the first one, whatever printed it (``print``, a traceback,
an import-time log call the service's own redaction does not see yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol
from urllib.parse import quote

import orjson

from corral import contract

Stream = Literal["stdout", "stderr"]

_FOLLOW_QUEUE = 10_000
"""Lines buffered per follower; a follower that falls further behind loses lines
(counted in :attr:`LogStore.dropped`) rather than growing memory without bound."""

_LINE_LIMIT = 1 << 20
"""The longest line kept (bytes, as the runtime's pipe readers allow): a longer one is
replaced by :data:`TOO_LONG`, so one runaway line cannot hold the orchestrator's memory."""

TOO_LONG = "[corral: line too long, dropped]"
_TOO_LONG = TOO_LONG.encode()

_CHUNK = 1 << 18
"""Bytes taken from a pipe per read: whatever it holds, up to this."""

_TAIL_KEPT = 50
"""Recent lines kept in memory per instance (for start errors)."""

RUN_SERVICE = f"{contract.COMPONENT_PREFIX}run"
"""The service and instance name of run markers (no user service can be named so)."""

REDACTED = "**********"
"""What a secret's value becomes (the SDK's own redaction writes the same)."""

_MIN_SECRET = 4
"""Shorter values would redact ordinary words; they are not secrets worth the name."""


class Redactor:
    """Secret values, per instance, and their replacement in text.

    Each value is matched as written and as it appears inside a JSON string (escaped,
    with and without ``ensure_ascii``: an SDK log line) or a URL (percent-encoded: a
    header or a query), longest first so a secret containing another goes whole."""

    def __init__(self) -> None:
        self._forms: dict[str, list[str]] = {}
        self._every: list[str] = []

    def add(self, instance: str, values: Iterable[str]) -> None:
        """Values ``instance`` holds (added to those it held: a rotated secret's old
        value may still be printed by a process that started with it)."""
        forms = set(self._forms.get(instance, ()))
        for value in values:
            if len(value) >= _MIN_SECRET:
                forms |= _forms(value)
        if forms:
            self._forms[instance] = sorted(forms, key=len, reverse=True)
            self._every = sorted(set(self._every) | forms, key=len, reverse=True)

    def forget(self, instance: str) -> None:
        """``instance`` is gone for good (ids are never reused in a run)."""
        if self._forms.pop(instance, None) is not None:
            every = {form for forms in self._forms.values() for form in forms}
            self._every = sorted(every, key=len, reverse=True)

    def holds(self, instance: str) -> bool:
        """Whether ``instance`` holds any secret to redact."""
        return instance in self._forms

    def line(self, instance: str, text: str) -> str:
        """``text`` with the secrets of ``instance`` redacted."""
        forms = self._forms.get(instance)
        return _replace(text, forms) if forms else text

    def anywhere(self, text: str) -> str:
        """``text`` with the secrets of every instance redacted (for what does not say,
        or may lie about, where it comes from: spans)."""
        return _replace(text, self._every) if self._every else text


def _forms(value: str) -> set[str]:
    return {
        value,
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(value)[1:-1],
        quote(value, safe=""),
    }


def _replace(text: str, forms: list[str]) -> str:
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


class Pipe(Protocol):
    """What :meth:`LogStore.capture` reads (an :class:`asyncio.StreamReader`)."""

    async def read(self, n: int = -1) -> bytes: ...


@dataclass(frozen=True, slots=True)
class LogLine:
    t: float
    """Unix time the line arrived."""
    service: str
    instance: str
    stream: Stream
    line: str

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "service": self.service,
            "instance": self.instance,
            "stream": self.stream,
            "line": self.line,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogLine:
        stream: Stream = "stderr" if data.get("stream") == "stderr" else "stdout"
        return cls(
            t=float(data["t"]),
            service=str(data["service"]),
            instance=str(data["instance"]),
            stream=stream,
            line=str(data["line"]),
        )


class LogStore:
    """Per-instance log files with in-memory fan-out. One event loop; not thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[str, IO[bytes]] = {}
        self._recent: dict[str, deque[str]] = {}
        self._followers: set[asyncio.Queue[LogLine]] = set()
        self._dirty: set[IO[bytes]] = set()
        self._flush_pending = False
        self.dropped = 0
        self.secrets = Redactor()
        """What each instance must not be seen printing."""
        self.taps: list[Callable[[LogLine], None]] = []
        """Called with every line once redacted (telemetry's kept, searchable index).
        A tap must be quick and must not raise: it runs on the line's arrival."""

    def path(self, instance: str) -> Path:
        return self.directory / f"{instance}.log"

    # --- writing (the runtime) --------------------------------------------------------

    def append(self, line: LogLine) -> None:
        self.append_lines(line.t, line.service, line.instance, line.stream, [line.line])

    def append_lines(
        self, t: float, service: str, instance: str, stream: Stream, texts: list[str]
    ) -> None:
        """Store lines of one instance's stream that arrived together at ``t``."""
        if not texts:
            return
        secrets = self.secrets
        if secrets.holds(instance):
            texts = [secrets.line(instance, text) for text in texts]
        # Each line is encoded as orjson.dumps(LogLine(...).to_json()) would encode it,
        # with the part the lines share encoded once (the lines' own text is escaped by
        # orjson as always).
        head = orjson.dumps(
            {"t": t, "service": service, "instance": instance, "stream": stream, "line": ""}
        )[: -len(b'""}')]
        self._handle(instance).write(
            b"".join([head + orjson.dumps(text) + b"}\n" for text in texts])
        )
        if not self._flush_pending:
            # Buffered and flushed once per event-loop turn, not per line.
            self._flush_pending = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (tests writing directly): flush now
                self.flush()
        recent = self._recent.get(instance)
        if recent is None:
            recent = self._recent[instance] = deque(maxlen=_TAIL_KEPT)
        recent.extend(texts[-_TAIL_KEPT:])
        if not (self.taps or self._followers):
            return  # no line objects: most lines of a busy instance are read, if ever, later
        for text in texts:
            line = LogLine(t, service, instance, stream, text)
            for tap in self.taps:
                tap(line)
            for queue in self._followers:
                try:
                    queue.put_nowait(line)
                except asyncio.QueueFull:
                    self.dropped += 1

    def _handle(self, instance: str) -> IO[bytes]:
        handle = self._files.get(instance)
        if handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            # The operator's alone (service output can hold personal data), whatever
            # the umask, and also for a file an older run created.
            fd = os.open(self.path(instance), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(fd, 0o600)
            handle = self._files[instance] = os.fdopen(fd, "ab")
        self._dirty.add(handle)
        return handle

    async def capture(self, reader: Pipe, *, service: str, instance: str, stream: Stream) -> None:
        """Store every line ``reader`` (an instance's stdout or stderr) yields, to its end.

        What the pipe holds is read at once and its complete lines stored together, with
        the time they arrived; an unfinished line waits for the rest. A line over
        :data:`_LINE_LIMIT` bytes is stored as :data:`TOO_LONG`."""
        pending = b""  # the start of a line not finished yet
        skipping = False  # inside a line already reported too long
        while True:
            chunk = await reader.read(_CHUNK)
            if not chunk:
                break
            t = time.time()
            end = chunk.rfind(b"\n")
            if end < 0:
                if not skipping:
                    pending += chunk
                    if len(pending) > _LINE_LIMIT:
                        pending, skipping = b"", True
                        self.append_lines(t, service, instance, stream, [TOO_LONG])
                continue
            block, pending = pending + chunk[:end], chunk[end + 1 :]
            if len(block) > _LINE_LIMIT:  # rare: a line in it may be too long
                rows = block.split(b"\n")
                block = b"\n".join(_TOO_LONG if len(row) > _LINE_LIMIT else row for row in rows)
            text = block.decode("utf-8", errors="replace")
            texts = text.split("\n")
            if skipping:
                texts, skipping = texts[1:], False  # the rest of the long line
            if "\r" in text:
                texts = [each.rstrip("\r") for each in texts]
            self.append_lines(t, service, instance, stream, texts)
        if pending and not skipping:  # a last line without its newline
            text = pending.decode("utf-8", errors="replace").rstrip("\r")
            text = TOO_LONG if len(pending) > _LINE_LIMIT else text
            self.append_lines(time.time(), service, instance, stream, [text])

    def mark_run(self, run_id: str, *, system: str, t: float | None = None) -> LogLine:
        """Write the marker of a run that begins now (before any of its lines)."""
        t = time.time() if t is None else t
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(t))
        text = f"──── corral up: run {run_id} of {system}, {stamp} ────"
        marker = LogLine(t, RUN_SERVICE, RUN_SERVICE, "stdout", text)
        self.append(marker)
        self.flush()
        return marker

    def flush(self) -> None:
        """Write buffered lines to their files (readers in other processes see them)."""
        self._flush_pending = False
        dirty, self._dirty = self._dirty, set()
        for handle in dirty:
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile
                handle.flush()

    def recent(self, instance: str, count: int = 20) -> list[str]:
        """The last ``count`` lines this run captured from ``instance`` (text only)."""
        return list(self._recent.get(instance, ()))[-count:]

    def close(self, instance: str | None = None) -> None:
        """Close one instance's file (or all); appending reopens it. Closing one instance
        (stopped for good: ids are never reused in a run) also forgets its recent lines,
        which start errors have already copied."""
        names = [instance] if instance is not None else list(self._files)
        if instance is not None:
            self._recent.pop(instance, None)
            self.secrets.forget(instance)
        for name in names:
            handle = self._files.pop(name, None)
            if handle is not None:
                self._dirty.discard(handle)
                handle.close()

    # --- reading (CLI, API) -----------------------------------------------------------

    def read(
        self,
        services: Collection[str] | None = None,
        since: float | None = None,
        tail: int | None = None,
    ) -> list[LogLine]:
        """Stored lines of ``services`` (all when None) at or after ``since``, merged in
        time order; only the last ``tail`` when given.

        Files are appended across runs and never rotated, so this avoids reading them
        whole: a file last written before ``since`` is skipped, and with ``tail`` or
        ``since`` each file is read backwards from its end, only as far as needed (each
        file is in arrival order, so the first line older than ``since`` ends it)."""
        self.flush()
        if tail is not None and tail <= 0:
            return []
        lines: list[LogLine] = []
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.log")):
                if since is not None and _mtime(path) < since:
                    continue
                if tail is None and since is None:
                    lines.extend(_read_file(path, services))
                else:
                    lines.extend(_read_backwards(path, services, since, tail))
        lines.sort(key=lambda entry: entry.t)
        if tail is not None:
            lines = lines[-tail:]
        return lines

    async def follow(
        self,
        services: Collection[str] | None = None,
        since: float | None = None,
        tail: int | None = None,
    ) -> AsyncIterator[LogLine]:
        """Stored lines selected by ``since``/``tail`` (none when both are None), then
        every new line as it arrives, until the caller stops iterating."""
        queue: asyncio.Queue[LogLine] = asyncio.Queue(maxsize=_FOLLOW_QUEUE)
        self._followers.add(queue)  # subscribe first so no line falls in between
        try:
            seen: set[tuple[float, str, str, str]] = set()
            if since is not None or tail is not None:
                for entry in self.read(services, since, tail):
                    seen.add((entry.t, entry.instance, entry.stream, entry.line))
                    yield entry
            while True:
                entry = await queue.get()
                if not _wanted(entry, services):
                    continue
                key = (entry.t, entry.instance, entry.stream, entry.line)
                if seen:
                    if key in seen:
                        continue
                    if queue.empty():
                        seen.clear()  # caught up: history can no longer repeat
                yield entry
        finally:
            self._followers.discard(queue)


_BLOCK = 64 * 1024
"""Bytes read per step when reading a log file backwards."""


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _parse(raw: str) -> LogLine | None:
    if not raw.strip():
        return None
    try:
        return LogLine.from_json(orjson.loads(raw))
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line while the writer is mid-write


def _wanted(entry: LogLine, services: Collection[str] | None) -> bool:
    """Lines of these services (all when None), and run markers whatever the filter."""
    return services is None or entry.service in services or entry.service == RUN_SERVICE


def _read_file(path: Path, services: Collection[str] | None) -> Iterable[LogLine]:
    with contextlib.suppress(OSError), path.open(encoding="utf-8", errors="replace") as handle:
        for raw in handle:
            entry = _parse(raw)
            if entry is None:
                continue
            if not _wanted(entry, services):
                return  # one instance per file, so one service: none of it is wanted
            yield entry


def _reversed_lines(handle: IO[bytes]) -> Iterator[bytes]:
    """The lines of a binary file, last first, reading it backwards in blocks."""
    position = handle.seek(0, os.SEEK_END)
    rest = b""
    while position > 0:
        size = min(_BLOCK, position)
        position -= size
        handle.seek(position)
        chunk = handle.read(size) + rest
        parts = chunk.split(b"\n")
        rest = parts[0]  # may continue in the block before
        yield from reversed(parts[1:])
    yield rest


def _read_backwards(
    path: Path, services: Collection[str] | None, since: float | None, tail: int | None
) -> list[LogLine]:
    """The last ``tail`` (all when None) lines of ``path`` at or after ``since``, in file
    order."""
    found: list[LogLine] = []
    with contextlib.suppress(OSError), path.open("rb") as handle:
        for raw in _reversed_lines(handle):
            entry = _parse(raw.decode("utf-8", errors="replace"))
            if entry is None:
                continue
            if since is not None and entry.t < since:
                break
            if not _wanted(entry, services):
                break  # one instance per file, so one service: none of it is wanted
            found.append(entry)
            if tail is not None and len(found) >= tail:
                break
    found.reverse()
    return found
