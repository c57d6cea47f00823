"""``corral logs``: the system's merged log lines made readable, one colour per service,
JSON log lines unpacked."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from corral.cli._common import FileOption, ManifestCommand, UsageError, client, console
from corral.cli._kept import kept
from corral.telemetry import LEVELS, LogQuery

app = typer.Typer()


@app.command(cls=ManifestCommand)
def logs(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to show (default all).")
    ] = None,
    file: FileOption = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep printing new lines.")
    ] = False,
    since: Annotated[str | None, typer.Option(help="Only lines newer than 30s, 10m, 2h…")] = None,
    tail: Annotated[int | None, typer.Option("--tail", "-n", help="Last N lines.")] = None,
    grep: Annotated[
        str | None, typer.Option(help="Lines containing this text (where a word starts).")
    ] = None,
    level: Annotated[
        str | None, typer.Option(help="This level and worse: debug, info, warning, error.")
    ] = None,
    trace: Annotated[str | None, typer.Option(help="Lines logged in this trace.")] = None,
    instance: Annotated[str | None, typer.Option(help="Lines of this instance only.")] = None,
) -> None:
    """Merged logs of the system, one colour per service. With --grep, --level, --trace
    or --instance, the kept log index is searched (also once the system is down)."""
    names = services or []
    try:
        start = parse_since(since, now=time.time()) if since else None
        rank = _level_rank(level)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if trace is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", trace):
        raise UsageError(f"invalid --trace {trace!r}: a trace id is 32 hexadecimal digits")
    searching = any(x is not None for x in (grep, level, trace, instance))
    if searching and not follow:
        _search(
            file,
            LogQuery(
                services=tuple(names),
                instance=instance,
                min_level=rank,
                text=grep,
                trace_id=trace,
                since=start,
                limit=tail or 200,
            ),
        )
        return
    wanted = _Filter(grep=grep, rank=rank, trace=trace, instance=instance)
    with client(file) as api:
        order = list(api.status().services)
        lines = (
            api.follow_logs(names, since=start, tail=tail)
            if follow
            else iter(api.logs(names, since=start, tail=tail))
        )
        try:
            for line in lines:
                if not wanted(line):
                    continue
                colour = colour_for(str(line.get("service")), order)
                console.print(format_line(line, colour=colour), highlight=False, soft_wrap=True)
        except KeyboardInterrupt:
            pass


def _level_rank(level: str | None) -> int | None:
    if level is None:
        return None
    rank = LEVELS.get(level.lower())
    if rank is None:
        raise ValueError(f"invalid --level {level!r}: use debug, info, warning or error")
    return rank


def _search(file: Path | None, query: LogQuery) -> None:
    with kept(file) as store:
        found = store.logs(query)
    order: list[str] = []
    for line in reversed(found):  # newest first from the index; printed in time order
        if line["service"] not in order:
            order.append(line["service"])
        colour = colour_for(str(line["service"]), order)
        console.print(format_line(line, colour=colour), highlight=False, soft_wrap=True)
    if not found:
        console.print("[dim]no kept line matches[/]")


class _Filter:
    """The search filters applied to followed lines as they arrive (the index's rules:
    text case aside, level and worse, trace id, instance)."""

    def __init__(
        self, *, grep: str | None, rank: int | None, trace: str | None, instance: str | None
    ) -> None:
        self.grep = grep.lower() if grep else None
        self.rank = rank
        self.trace = trace.lower() if trace else None
        self.instance = instance

    def __call__(self, line: Mapping[str, Any]) -> bool:
        if self.instance is not None and line.get("instance") != self.instance:
            return False
        text = str(line.get("line", ""))
        if self.grep is not None and self.grep not in text.lower():
            return False
        if self.rank is None and self.trace is None:
            return True
        parsed = _json(text) or {}
        if self.rank is not None and LEVELS.get(_level(parsed, ""), 0) < self.rank:
            return False
        trace = parsed.get("trace_id", parsed.get("trace.id", ""))
        return self.trace is None or str(trace).lower() == self.trace


PALETTE = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "bright_red",
    "bright_cyan",
    "bright_green",
)
LEVEL_STYLE = {
    "debug": "dim",
    "info": "green",
    "warning": "yellow",
    "error": "red",
    "critical": "bold red",
}
_SKIP = {"event", "level", "timestamp", "time", "service", "instance", "logger"}
# The same fields under ECS names (CORRAL_LOG_FORMAT=ecs).
_SKIP |= {"message", "log.level", "@timestamp", "service.name", "service.node.name"}
_SKIP |= {"log.logger", "ecs.version"}


def _level(parsed: Mapping[str, Any], default: str) -> str:
    """A line's level under the SDK's default name or ECS's."""
    return str(parsed.get("level", parsed.get("log.level", default))).lower()


def colour_for(service: str, services: list[str]) -> str:
    """A stable colour per service (by its position in the manifest's order)."""
    index = services.index(service) if service in services else sum(map(ord, service))
    return PALETTE[index % len(PALETTE)]


def format_line(entry: Mapping[str, Any], *, colour: str, width: int = 13) -> Text:
    """``greeter-1  12:00:01.123 info  request handled method=GET status=200``."""
    instance = str(entry.get("instance", "?"))
    stamp = time.strftime("%H:%M:%S", time.localtime(float(entry.get("t", 0))))
    millis = int((float(entry.get("t", 0)) % 1) * 1000)
    text = Text()
    text.append(f"{instance:<{width}} ", style=colour)
    text.append(f"{stamp}.{millis:03d} ", style="dim")
    raw = str(entry.get("line", ""))
    parsed = _json(raw)
    if parsed is None:
        style = "red" if entry.get("stream") == "stderr" else ""
        text.append(raw, style=style)
        return text
    level = _level(parsed, "info")
    text.append(f"{level:<7} ", style=LEVEL_STYLE.get(level, ""))
    text.append(str(parsed.get("event", parsed.get("message", ""))))
    for key, value in parsed.items():
        if key in _SKIP or value in (None, ""):
            continue
        text.append(f" {key}=", style="dim")
        text.append(value if isinstance(value, str) else json.dumps(value))
    return text


def _json(raw: str) -> dict[str, Any] | None:
    if not raw.startswith("{"):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_SINCE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, *, now: float) -> float:
    """``10m`` (ten minutes ago), ``90s``, or a Unix timestamp -> Unix time."""
    match = _SINCE.match(value.strip())
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"invalid --since {value!r}: use 30s, 10m, 2h or a Unix time") from None
