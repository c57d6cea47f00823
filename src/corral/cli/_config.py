"""``corral config ...``: show, history, diff, instances, set, unset, rollback, apply.

Changes go through the running system's API, which rolls them out. Reading works on a
stopped system too: the history lives in ``.corral/config/`` and is read from there.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from corral.api import ConfigClient
from corral.cli._common import (
    FileOption,
    JsonOption,
    ManifestCommand,
    UsageError,
    client,
    console,
    state_dir,
)
from corral.cli._progress import with_progress
from corral.config import (
    CONFIG_DIRNAME,
    HISTORY,
    Change,
    ConfigDiff,
    ConfigHistoryEntry,
    ConfigOutcome,
    ConfigShown,
    ConfigStore,
    UnknownVersionError,
    current_user,
    diff_view,
    history_view,
    version_view,
)
from corral.errors import CorralError
from corral.runtime.errors import NotRunningError

config_app = typer.Typer(
    help="Service configuration: layers, versions with history and rollback, live changes.",
    no_args_is_help=True,
)

MessageOption = Annotated[
    str, typer.Option("--message", "-m", help="Why: kept in the history with the change.")
]
IfVersionOption = Annotated[
    int | None,
    typer.Option(
        "--if-version",
        help="Only if the configuration is still at this version (else nothing changes).",
        show_default=False,
    ),
]
ServiceOption = Annotated[
    str | None, typer.Option("--service", "-s", help="Only this service.", show_default=False)
]


def _read(
    file: Path | None,
    online: Callable[[ConfigClient], Any],
    offline: Callable[[ConfigStore], Any],
) -> Any:
    """From the running system's API, or from the history on disk when none runs."""
    try:
        api = client(file)
    except NotRunningError:
        store = ConfigStore(state_dir(file) / CONFIG_DIRNAME)
        if store.latest() is None:
            raise CorralError(
                "no configuration history here yet: it starts with the first `corral up`"
            ) from None
        try:
            return offline(store)
        except UnknownVersionError as exc:
            raise CorralError(str(exc)) from None
    with api:
        return online(ConfigClient(api))


def _change(
    file: Path | None,
    call: Callable[[ConfigClient, dict[str, Any]], ConfigOutcome],
    doing: str,
    *,
    message: str,
    if_version: int | None,
) -> None:
    """Make a change through the API: ``call(client, change)``, where ``change`` is the
    author, message and compare-and-swap version every change carries. Instances that
    a rollout restarts are shown as they go."""
    change = {"author": current_user(), "message": message, "if_version": if_version}
    try:
        api = client(file)
    except NotRunningError as exc:
        raise NotRunningError(f"{doing} changes a running system: {exc}") from None
    with api:
        outcome = with_progress(api, console, lambda: call(ConfigClient(api), change), doing=doing)
    _print_outcome(outcome)


@config_app.command("show", cls=ManifestCommand)
def show(
    service: Annotated[str | None, typer.Argument(help="One service (default: all).")] = None,
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="An earlier version.", show_default=False)
    ] = None,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Each variable's value and where it comes from (secrets as fingerprints)."""

    def offline(store: ConfigStore) -> ConfigShown:
        record = store.get(version) if version is not None else store.latest()
        assert record is not None
        if service is not None and service not in record.services:
            raise CorralError(f"no service named {service!r} in version {record.version}")
        return version_view(record, service)

    data: ConfigShown = _read(file, lambda c: c.show(service, version), offline)
    if as_json:
        print(json.dumps(data.model_dump(mode="json"), indent=2))
        return
    table = Table(title=_title(data), title_justify="left")
    for column in ("service", "variable", "value", "source"):
        table.add_column(column)
    for name, variables in data.services.items():
        for key, entry in variables.items():
            table.add_row(name, key, entry.value, entry.source)
    console.print(table)


@config_app.command("history", cls=ManifestCommand)
def history(
    service: Annotated[str | None, typer.Argument(help="One service (default: all).")] = None,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every version: when, who, why, and what it changed."""
    data: list[ConfigHistoryEntry] = _read(
        file, lambda c: c.history(service), lambda s: history_view(s.history(), service)
    )
    if as_json:
        print(json.dumps(HISTORY.dump_python(data, mode="json"), indent=2))
        return
    for entry in data:
        console.print(_title(entry), highlight=False)
        for change in entry.changes:
            console.print(f"    {_change_line(change)}", highlight=False, markup=False)


@config_app.command("diff", cls=ManifestCommand)
def diff(
    a: Annotated[int, typer.Argument(help="From this version.")],
    b: Annotated[int, typer.Argument(help="To this version.")],
    service: ServiceOption = None,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """What differs from version A to version B."""
    data: ConfigDiff = _read(
        file, lambda c: c.diff(a, b, service), lambda s: diff_view(s.get(a), s.get(b), service)
    )
    if as_json:
        print(json.dumps(data.model_dump(mode="json"), indent=2))
        return
    if not data.changes:
        console.print(f"versions {a} and {b} give every service the same configuration")
    for change in data.changes:
        console.print(_change_line(change), highlight=False, markup=False)


@config_app.command("instances", cls=ManifestCommand)
def instances(file: FileOption = None, as_json: JsonOption = False) -> None:
    """The version each running instance took, how, and its propagation latency (from
    the version's publication to the instance's report)."""
    try:
        api = client(file)
    except NotRunningError as exc:
        raise NotRunningError(f"config instances reads a running system: {exc}") from None
    with api:
        found = ConfigClient(api).instances()
    if as_json:
        print(json.dumps([i.model_dump(mode="json") for i in found], indent=2))
        return
    table = Table(title_justify="left")
    for column in ("instance", "service", "version", "outcome", "propagation"):
        right = column in ("version", "propagation")
        table.add_column(column, justify="right" if right else "left")
    for i in found:
        latency = "-" if i.latency is None else f"{i.latency * 1000:.1f} ms"
        if i.latency is None and i.outcome is not None:
            latency = "at start"
        version = "-" if i.version is None else str(i.version) + ("" if i.current else " (old)")
        table.add_row(i.instance, i.service, version, i.outcome or "does not report", latency)
    console.print(table)


@config_app.command("set", cls=ManifestCommand)
def set_command(
    service: Annotated[str, typer.Argument(help="The service.")],
    assignments: Annotated[list[str], typer.Argument(help="KEY=VALUE, one or more.")],
    message: MessageOption = "",
    if_version: IfVersionOption = None,
    new: Annotated[
        bool,
        typer.Option(
            "--new",
            help="Add a variable the service does not declare (a misspelled key is refused).",
        ),
    ] = False,
    file: FileOption = None,
) -> None:
    """Set variables at run time (they win over the manifest) and roll them out: in place
    where the service marks the fields reloadable, by a rolling restart otherwise."""
    values: dict[str, str] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"expected KEY=VALUE, got {item!r}")
        values[key] = value
    _change(
        file,
        lambda c, change: c.set(service, values, **change, new=new or None),
        f"setting {', '.join(values)} of {service}",
        message=message,
        if_version=if_version,
    )


@config_app.command("unset", cls=ManifestCommand)
def unset_command(
    service: Annotated[str, typer.Argument(help="The service.")],
    keys: Annotated[list[str], typer.Argument(help="Variables set with `corral config set`.")],
    message: MessageOption = "",
    if_version: IfVersionOption = None,
    file: FileOption = None,
) -> None:
    """Drop runtime values: the manifest's apply again (or none)."""
    _change(
        file,
        lambda c, change: c.unset(service, keys, **change),
        f"unsetting {', '.join(keys)} of {service}",
        message=message,
        if_version=if_version,
    )


@config_app.command("rollback", cls=ManifestCommand)
def rollback(
    version: Annotated[int, typer.Argument(help="The version to go back to.")],
    message: MessageOption = "",
    if_version: IfVersionOption = None,
    file: FileOption = None,
) -> None:
    """Make an earlier version's configuration current again (as a new version)."""
    _change(
        file,
        lambda c, change: c.rollback(version, **change),
        f"rolling back to version {version}",
        message=message,
        if_version=if_version,
    )


@config_app.command("apply", cls=ManifestCommand)
def apply(
    message: MessageOption = "",
    if_version: IfVersionOption = None,
    file: FileOption = None,
) -> None:
    """Read the manifest, its overlay and the secrets again; roll out what changed."""
    _change(
        file,
        lambda c, change: c.apply(**change),
        "applying the manifest's configuration",
        message=message,
        if_version=if_version,
    )


def _title(entry: ConfigShown | ConfigHistoryEntry) -> str:
    when = datetime.datetime.fromtimestamp(entry.time).strftime("%Y-%m-%d %H:%M:%S")
    text = f"version {entry.version}  {when}  {entry.author}  {entry.kind}"
    if entry.environment:
        text += f"  (env {entry.environment})"
    if entry.message:
        text += f": {entry.message}"
    return text


def _change_line(change: Change) -> str:
    where = f"{change.service}.{change.key}"
    if change.old is None:
        return f"+ {where} = {change.new}"
    if change.new is None:
        return f"- {where} (was {change.old})"
    return f"~ {where}: {change.old} -> {change.new}"


def _print_outcome(outcome: ConfigOutcome) -> None:
    if outcome.version is None:
        console.print("nothing changed: the configuration is already so")
    else:
        console.print(f"[green]✔[/] version {outcome.version}", highlight=False)
        for change in outcome.changes:
            console.print(f"    {_change_line(change)}", highlight=False, markup=False)
        for service, how in outcome.services.items():
            console.print(f"  {service}: {how}", highlight=False)
    for note in outcome.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)
