"""``corral traces``: search the kept traces, and show one as a waterfall (through the
API while the system runs, from the kept store once it is down: see ``_kept``)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from corral.cli._common import FileOption, ManifestCommand, UsageError, console, hint
from corral.cli._kept import kept
from corral.cli._logs import parse_since
from corral.telemetry import TraceQuery

app = typer.Typer()

_DURATION_UNITS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_duration_ms(value: str) -> float:
    """``100ms``, ``1.5s``, ``2m``, ``1h`` or a plain number of milliseconds -> milliseconds."""
    text = value.strip().lower()
    for unit in sorted(_DURATION_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            number = text[: -len(unit)]
            break
    else:
        number, unit = text, "ms"
    try:
        found = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise ValueError(f"invalid duration {value!r}: use 100ms, 1.5s or 2m") from None
    if found < 0:
        raise ValueError(f"invalid duration {value!r}: it cannot be negative")
    return found


@app.command(cls=ManifestCommand)
def traces(
    trace_id: Annotated[
        str | None, typer.Argument(help="Show this trace as a waterfall instead.")
    ] = None,
    file: FileOption = None,
    service: Annotated[str | None, typer.Option(help="Traces that cross this service.")] = None,
    route: Annotated[str | None, typer.Option(help="Traces whose root serves this route.")] = None,
    status: Annotated[str | None, typer.Option(help="`error`: only traces with an error.")] = None,
    min_duration: Annotated[
        str | None, typer.Option("--min-duration", help="At least this long: 100ms, 1.5s.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Started in the last 30s, 10m, 2h…")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Search the kept traces (newest first), or show one with its spans."""
    if status not in (None, "error"):
        raise UsageError(f"invalid --status {status!r}: the only filter is `error`")
    try:
        query = TraceQuery(
            service=service,
            route=route,
            errors_only=status == "error",
            min_duration_ms=parse_duration_ms(min_duration) if min_duration else None,
            since=parse_since(since, now=time.time()) if since else None,
            limit=limit,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with kept(file) as store:
        if trace_id is not None:
            found = store.trace(trace_id)
            if found is None:
                raise UsageError(f"no trace {trace_id} is kept (see `{hint('traces', file)}`)")
            if as_json:
                console.print_json(json.dumps(found))
            else:
                console.print(waterfall(found))
            return
        found_list = store.traces(query)
    if as_json:
        console.print_json(json.dumps(found_list))
        return
    if not found_list:
        console.print("[dim]no kept trace matches[/]")
        return
    console.print(trace_table(found_list))


def trace_table(found: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("started", "duration", "root", "route", "services", "spans", "errors", "trace"):
        table.add_column(column, justify="right" if column in ("duration", "spans") else "left")
    for t in found:
        stamp = time.strftime("%m-%d %H:%M:%S", time.localtime(t["start"]))
        errors = Text(str(t["errors"]), style="red" if t["errors"] else "dim")
        table.add_row(
            stamp,
            f"{t['duration_ms']:.1f} ms",
            Text(str(t["name"] or "?")),
            Text(str(t.get("route") or "")),
            Text(",".join(t["services"])),
            str(t["span_count"]),
            errors,
            t["trace_id"],
        )
    return table


def waterfall(trace: dict[str, Any], width: int = 40) -> Table:
    """Each span under its parent, with a bar placed on the trace's time line."""
    spans = trace["spans"]
    start = min(s["start"] for s in spans)
    total = max(max(s["end"] for s in spans) - start, 1e-9)
    children: dict[str | None, list[dict[str, Any]]] = {}
    ids = {s["span_id"] for s in spans}
    for s in spans:
        parent = s["parent_span_id"] if s["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(s)
    table = Table(box=None, pad_edge=False, title=f"trace {trace['trace_id']}")
    for column in ("span", "service", "duration", "timeline"):
        table.add_column(column, justify="right" if column == "duration" else "left")

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x["start"]):
            left = int((s["start"] - start) / total * width)
            size = max(1, int((s["end"] - s["start"]) / total * width))
            bar = Text(" " * left + "█" * min(size, width - left))
            bar.stylize("red" if s["status"] == "error" else "cyan")
            table.add_row(
                Text("  " * depth + s["name"]), s["service"], f"{s['duration_ms']:.1f} ms", bar
            )
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return table
