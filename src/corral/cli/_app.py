"""The ``corral`` command. Thin: it parses arguments, then either runs a system in this
process (``up``) or calls the control-plane API of a running one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from corral.api import ApiClient, NotRunningError, RunFiles
from corral.api._client import _pid_alive
from corral.cli._logs import colour_for, format_line, parse_since
from corral.cli._progress import StartProgress
from corral.cli._tables import circuit_lines, endpoints_lines, status_table
from corral.manifest import ManifestError, load, resolve_path
from corral.plan import STATE_DIRNAME, Plan, ServicePlan, resolve

app = typer.Typer(
    name="corral",
    help="Run a system of Python services from one manifest (corral.yaml).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Piped output (scripts, CI logs) gets a wide fixed width instead of rich's 80 columns,
# so tables and diagnostics are not cut or folded.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        envvar="CORRAL_FILE",
        help="Manifest file or its folder (default: ./corral.yaml).",
        show_default=False,
    ),
]
LogsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        envvar="CORRAL_FILE",
        help="Manifest file or its folder (default: ./corral.yaml).",
        show_default=False,
    ),
]
"""For `logs`, where -f means --follow (as in docker and kubectl)."""
EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        envvar="CORRAL_ENV",
        help="Environment: merge the overlay corral.<env>.yaml over the manifest.",
        show_default=False,
    ),
]
FileArgument = Annotated[
    Path | None,
    typer.Argument(
        help="Manifest file or its folder (default: ./corral.yaml).", show_default=False
    ),
]


class UserError(Exception):
    """A mistake or a state the user can fix; printed without a traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _plan(target: Path | None) -> Plan:
    manifest = load(target, environment=os.environ.get("CORRAL_ENV"))
    return resolve(manifest, python=sys.executable)


def _state_dir(target: Path | None) -> Path:
    return resolve_path(target).parent / STATE_DIRNAME


def _client(target: Path | None) -> ApiClient:
    state_dir = _state_dir(target)
    try:
        return ApiClient.for_state_dir(state_dir)
    except NotRunningError:
        raise UserError(
            f"no system is running for {resolve_path(target)} (start it with `corral up`)"
        ) from None


# --- validate -------------------------------------------------------------------------


@app.command()
def validate(
    file: FileArgument = None, file_option: FileOption = None, env: EnvOption = None
) -> None:
    """Check a manifest (and an environment's overlay) and list every problem (exit 1 if
    any), including what Envoy would reject in the rendered gateway config."""
    manifest = load(file or file_option, environment=env)
    plan = resolve(manifest, python=sys.executable)
    if plan.gateway is not None:
        from corral.gateway import EnvoyNotFoundError, validate_gateway

        try:
            problems = validate_gateway(manifest, plan)
        except EnvoyNotFoundError as exc:
            raise UserError(f"cannot validate the gateway: {exc}") from None
        if problems:
            raise ManifestError(problems)
    names = ", ".join(plan.start_order)
    console.print(
        f"[green]✔[/] {resolve_path(file or file_option)}: system {plan.system!r}, "
        f"{len(plan.services)} services ({names})",
        highlight=False,
    )


# --- up / down ------------------------------------------------------------------------


@app.command()
def up(
    file: FileArgument = None,
    file_option: FileOption = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background.")] = False,
    no_logs: Annotated[
        bool, typer.Option("--no-logs", help="Do not follow logs once the system is ready.")
    ] = False,
    daemon: Annotated[bool, typer.Option("--daemon", hidden=True)] = False,
    env: EnvOption = None,
) -> None:
    """Start the system; Ctrl-C stops everything gracefully."""
    target = file or file_option
    manifest = load(target, environment=env)
    plan = resolve(manifest, python=sys.executable)
    found = RunFiles(plan.state_dir).read()
    if found and _pid_alive(int(found[0].get("pid", 0))) and found[0].get("pid") != os.getpid():
        raise UserError(
            f"system {plan.system!r} is already running (pid {found[0]['pid']}); "
            "use `corral status` or `corral down`"
        )
    if detach:
        _up_detached(manifest.path, plan, env)
        return
    from corral.broker import BrokerError
    from corral.control import SystemSession, addons_for
    from corral.gateway import GatewayError
    from corral.runtime.errors import AlreadyRunningError, CorralRuntimeError, StartError

    session = SystemSession(manifest, plan, addons=addons_for(plan))
    try:
        asyncio.run(_run_foreground(session, plan, quiet=daemon, follow_logs=not no_logs))
    except StartError as exc:
        raise UserError(f"{plan.system} could not start: {exc.details()}") from None
    except AlreadyRunningError as exc:
        raise UserError(str(exc)) from None
    except (CorralRuntimeError, GatewayError, BrokerError) as exc:
        # Setup problems of the parts (no envoy or nats-server binary, NATS unreachable):
        # the person can fix them, so a message, not a traceback.
        raise UserError(f"{plan.system} could not start: {exc}") from None


async def _run_foreground(session: Any, plan: Plan, *, quiet: bool, follow_logs: bool) -> None:
    desired = {name: s.replicas for name, s in plan.services.items()}
    run = asyncio.create_task(session.run())
    if not quiet:
        with StartProgress(console, desired) as progress:
            # Redraw from the registry at a steady rate; a watch would redraw per change,
            # which is more work and no more information for a person.
            while not session.ready.is_set() and not run.done():
                snapshot = session.registry.snapshot()
                progress.update([r.to_json() for r in snapshot.instances if not r.component])
                await asyncio.wait({run}, timeout=0.05)
            snapshot = session.registry.snapshot()
            progress.update([r.to_json() for r in snapshot.instances if not r.component])
        if session.ready.is_set():
            status = session.status()
            for line in endpoints_lines(status):
                console.print(line, highlight=False)
            with ApiClient(str(status["api_url"]), session.admin_token) as own:
                # In a thread: the API answering it runs on this loop.
                console.print(await asyncio.to_thread(_dashboard.login_line, own), highlight=False)
            console.print("[dim]Ctrl-C stops the system; `corral status` in another terminal.[/]")
            if follow_logs:
                services = list(plan.start_order)
                follower = asyncio.create_task(_print_logs(session, services))
                await asyncio.wait({run})
                follower.cancel()
    await run
    if not quiet:
        console.print(f"[green]✔[/] {plan.system} stopped")


async def _print_logs(session: Any, services: list[str]) -> None:
    async for entry in session.logs.follow(None, time.time()):
        line = entry.to_json() if hasattr(entry, "to_json") else dict(entry.__dict__)
        console.print(
            format_line(line, colour=colour_for(str(line.get("service")), services)),
            highlight=False,
            soft_wrap=True,
        )


def _up_detached(manifest_path: Path, plan: Plan, env: str | None) -> None:
    plan.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = plan.state_dir / "corral.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "corral", "up", str(manifest_path), "--daemon"),
                *(("--env", env) if env else ()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    desired = {name: s.replicas for name, s in plan.services.items()}
    client: ApiClient | None = None
    with StartProgress(console, desired) as progress:
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                raise UserError(f"{plan.system} could not start:\n" + "\n".join(tail))
            if client is None:
                found = RunFiles(plan.state_dir).read()
                if found and found[0].get("pid") == process.pid:
                    client = ApiClient(str(found[0]["url"]), found[1])
            if client is not None:
                try:
                    status = client.status()
                except NotRunningError:
                    status = None
                if status is not None:
                    progress.update(
                        [i for i in status.get("instances", []) if not i.get("component")]
                    )
                    if status.get("ready") or progress.all_ready:
                        break
            time.sleep(0.1)
    for line in endpoints_lines(status):
        console.print(line, highlight=False)
    assert client is not None
    console.print(_dashboard.login_line(client), highlight=False)
    console.print(
        f"[dim]running in the background (pid {process.pid}); logs: corral logs -f; "
        "stop: corral down[/]"
    )


@app.command()
def down(file: FileOption = None) -> None:
    """Stop a running system gracefully (reverse dependency order)."""
    state_dir = _state_dir(file)
    with _client(file) as client:
        pid = int((RunFiles(state_dir).read() or ({"pid": 0}, ""))[0].get("pid", 0))
        client.down()
    with console.status("stopping…"):
        deadline = time.monotonic() + 300
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    if _pid_alive(pid):
        raise UserError(f"the system (pid {pid}) is still stopping; see .corral/corral.log")
    console.print("[green]✔[/] stopped")


# --- inspection -----------------------------------------------------------------------


@app.command()
def status(
    file: FileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """Instances with pid, port, state, readiness, restarts and uptime."""
    with _client(file) as client:
        data = client.status()
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    console.print(status_table(data))
    for line in endpoints_lines(data):
        console.print(line, highlight=False)
    for line in circuit_lines(data):
        console.print(f"[red]{line}[/]", highlight=False)
    from corral.cli._chaos import chaos_lines

    for line in chaos_lines(data):
        console.print(f"[yellow]{line}[/]", highlight=False)


@app.command()
def logs(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to show (default all).")
    ] = None,
    file: LogsFileOption = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    since: Annotated[str | None, typer.Option(help="Only lines newer than 30s, 10m, 2h…")] = None,
    tail: Annotated[int | None, typer.Option("--tail", "-n", help="Last N lines.")] = None,
) -> None:
    """Merged logs of the system, one colour per service."""
    names = services or []
    start = parse_since(since, now=time.time()) if since else None
    with _client(file) as client:
        order = [str(s) for s in client.status().get("services", {})]
        lines = (
            client.follow_logs(names, since=start, tail=tail)
            if follow
            else iter(client.logs(names, since=start, tail=tail))
        )
        try:
            for line in lines:
                colour = colour_for(str(line.get("service")), order)
                console.print(format_line(line, colour=colour), highlight=False, soft_wrap=True)
        except KeyboardInterrupt:
            pass


# --- changes --------------------------------------------------------------------------


@app.command()
def scale(
    assignments: Annotated[list[str], typer.Argument(help="SERVICE=N, one or more.")],
    file: FileOption = None,
) -> None:
    """Set replicas; new instances count once ready, scale-down stops the newest first."""
    wanted: list[tuple[str, int]] = []
    for item in assignments:
        service, _, text = item.partition("=")
        if not service or not text.isdigit():
            raise UserError(f"expected SERVICE=N, got {item!r}", code=2)
        wanted.append((service, int(text)))
    with _client(file) as client:
        for service, count in wanted:
            with console.status(f"scaling {service} to {count}…"):
                client.scale(service, count)
            console.print(f"[green]✔[/] {service} scaled to {count}")


@app.command()
def restart(
    service: str,
    file: FileOption = None,
    rolling: Annotated[
        bool, typer.Option(help="One instance at a time; the replacement is ready first.")
    ] = False,
) -> None:
    """Restart a service's instances."""
    with _client(file) as client, console.status(f"restarting {service}…"):
        client.restart(service, rolling=rolling)
    console.print(f"[green]✔[/] {service} restarted" + (" (rolling)" if rolling else ""))


@app.command()
def stop(service: str, file: FileOption = None) -> None:
    """Stop every instance of one service (the rest keeps running)."""
    with _client(file) as client, console.status(f"stopping {service}…"):
        client.stop(service)
    console.print(f"[green]✔[/] {service} stopped")


# --- databases ------------------------------------------------------------------------


@app.command()
def migrate(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to migrate (default: all).")
    ] = None,
    file: FileOption = None,
) -> None:
    """Apply each SDK service's migrations to its own database, then exit.

    The same databases `corral up` gives the services (provisioned on PostgreSQL when
    the manifest asks for it) and the same lock, so it is safe while they run."""
    from corral.plan import Endpoints, instance_environment
    from corral.runtime.databases import DatabaseSetupError, service_database_url
    from corral.runtime.orchestrator import CONTROL_PLANE_SECRETS

    plan = _plan(file)
    names = services or list(plan.start_order)
    unknown = [n for n in names if n not in plan.services]
    if unknown:
        raise UserError(
            f"no service named {unknown[0]!r} (services: {', '.join(plan.start_order)})"
        )
    failed = 0
    for name in names:
        service = plan.services[name]
        if service.app is None:
            console.print(f"[dim]- {name}: not a corral.sdk app (migrate it yourself)[/]")
            continue
        try:
            url = asyncio.run(service_database_url(plan, service, os.environ))
        except DatabaseSetupError as exc:
            raise UserError(f"{name}: {exc}") from None
        if url is None:
            console.print(f"[dim]- {name}: no database[/]")
            continue
        env = {
            **{k: v for k, v in os.environ.items() if k not in CONTROL_PLANE_SECRETS},
            **instance_environment(
                plan,
                service,
                instance=f"{name}-migrate",
                port=0,
                endpoints=Endpoints(),
                database_url=url,
            ),
            **_secrets_of(service),
        }
        result = subprocess.run(
            [sys.executable, "-m", "corral.sdk.migrate", service.app],
            cwd=service.workdir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0:
            console.print(f"[green]✔[/] {result.stdout.strip()}", highlight=False)
        else:
            failed += 1
            errors.print(f"✖ {name}: {result.stderr.strip()}", highlight=False, markup=False)
    if failed:
        raise UserError(f"{failed} service(s) could not be migrated")


def _secrets_of(service: ServicePlan) -> dict[str, str]:
    """The service's secrets, read as `corral up` reads them (its settings may need them)."""
    from corral.config import read_secret

    try:
        return {key: read_secret(ref, os.environ) for key, ref in service.secrets.items()}
    except (LookupError, OSError) as exc:
        raise UserError(f"{service.name}: cannot read a secret: {exc}") from None


# --- gateway --------------------------------------------------------------------------

gateway_app = typer.Typer(help="The Envoy API gateway.", no_args_is_help=True)
app.add_typer(gateway_app, name="gateway")


@gateway_app.command("routes")
def gateway_routes(
    file: FileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The raw route list.")] = False,
) -> None:
    """The route table Envoy is serving right now (read from its admin API)."""
    import httpx
    from rich.table import Table

    from corral.gateway import live_routes

    with _client(file) as client:
        admin = client.status().get("gateway_admin_socket")
    if not admin:
        raise UserError("this system has no gateway (no `gateway:` section in the manifest)")
    try:
        routes = live_routes(str(admin))
    except httpx.HTTPError as exc:
        raise UserError(f"cannot read the gateway's routes from {admin}: {exc}") from None
    if as_json:
        print(json.dumps(routes, indent=2, sort_keys=True))
        return
    table = Table(title="gateway routes (live, in match order)", title_justify="left")
    columns = ("match", "methods", "host", "service", "rewrite", "timeout", "auth")
    for column in columns:
        table.add_column(column)
    for route in routes:
        table.add_row(*(_cell(route.get(column)) for column in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


# --- events ---------------------------------------------------------------------------

events_app = typer.Typer(help="The event bus (NATS JetStream).", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: events a service could not handle.", no_args_is_help=True)
events_app.add_typer(dlq_app, name="dlq")
app.add_typer(events_app, name="events")


def _bus(file: Path | None) -> tuple[str, str]:
    """(NATS URL, system name) of the running system."""
    with _client(file) as client:
        data = client.status()
    url = data.get("nats_url")
    if not url:
        raise UserError("this system has no event bus (no `events:` section in the manifest)")
    return str(url), str(data["system"])


@events_app.command("catalog")
def events_catalog(
    file: FileOption = None,
    as_yaml: Annotated[bool, typer.Option("--yaml", help="YAML instead of JSON.")] = False,
) -> None:
    """Topics, producers, consumers and payload schemas, as an AsyncAPI 3 document."""
    from corral.broker import catalog

    plan = _plan(file)
    if plan.events is None:
        raise UserError("this manifest has no `events:` section")
    url = None
    found = RunFiles(plan.state_dir).read()
    if found and _pid_alive(int(found[0].get("pid", 0))):
        with _client(file) as client:
            url = client.status().get("nats_url")
    document = asyncio.run(catalog(url, plan.events, plan.root))
    if as_yaml:
        from ruamel.yaml import YAML

        yaml = YAML()
        yaml.default_flow_style = False
        yaml.dump(document, sys.stdout)
    else:
        print(json.dumps(document, indent=2, sort_keys=False))


@dlq_app.command("list")
def dlq_list_command(
    file: FileOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every dead letter, oldest first."""
    from rich.table import Table

    from corral.broker import dlq_list

    url, system = _bus(file)
    letters = asyncio.run(dlq_list(url, system))
    if as_json:
        print(json.dumps(letters, indent=2))
        return
    if not letters:
        console.print("[green]no dead letters[/]")
        return
    table = Table(title=f"dead letters ({len(letters)})", title_justify="left")
    for column in ("seq", "service", "topic", "event_id", "deliveries", "error"):
        table.add_column(column)
    for letter in letters:
        table.add_row(
            *(_cell(letter.get(c)) for c in ("seq", "service", "topic", "event_id")),
            _cell(letter.get("deliveries")),
            _cell(letter.get("error")),
        )
    console.print(table)


@dlq_app.command("show")
def dlq_show_command(seq: int, file: FileOption = None) -> None:
    """One dead letter whole: the event, the error and its delivery history."""
    from corral.broker import dlq_show

    url, system = _bus(file)
    letter = asyncio.run(dlq_show(url, system, seq))
    if letter is None:
        raise UserError(f"no dead letter with sequence {seq}")
    print(json.dumps(letter, indent=2, default=str))


@dlq_app.command("replay")
def dlq_replay_command(
    seq: Annotated[int | None, typer.Argument(help="One dead letter; all when omitted.")] = None,
    file: FileOption = None,
) -> None:
    """Send dead letters back to the service that failed them (trace context kept)."""
    from corral.broker import dlq_replay

    url, system = _bus(file)
    replayed = asyncio.run(dlq_replay(url, system, seq))
    if seq is not None and not replayed:
        raise UserError(f"no dead letter with sequence {seq}")
    console.print(f"[green]✔[/] replayed {len(replayed)} dead letter(s)")


@dlq_app.command("purge")
def dlq_purge_command(
    file: FileOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete every dead letter."""
    from corral.broker import dlq_purge

    url, system = _bus(file)
    if not yes and not typer.confirm("delete every dead letter?"):
        raise UserError("nothing deleted")
    count = asyncio.run(dlq_purge(url, system))
    console.print(f"[green]✔[/] purged {count} dead letter(s)")


# --- services -------------------------------------------------------------------------


@app.command()
def serve(
    target: Annotated[str, typer.Argument(help="module:attribute of a corral.sdk Service")],
) -> None:
    """Serve a corral.sdk service (what `app:` services run; HOST/PORT from the env)."""
    from corral.sdk.serve import run

    run(target)


def main() -> None:
    """Entry point: user mistakes become messages and exit codes, never tracebacks."""
    from corral.api import ApiError

    try:
        app()
    except ManifestError as exc:
        # Paths under the current folder are shown relative, as editors and compilers do.
        text = exc.render().replace(f"{Path.cwd()}{os.sep}", "")
        errors.print(text, highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except UserError as exc:
        errors.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.code)
    except ApiError as exc:
        errors.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except NotRunningError as exc:
        errors.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


# --- commands in their own modules (imported last: they use the options above) -------

from corral.cli import _dashboard  # noqa: E402
from corral.cli._chaos import chaos_app  # noqa: E402
from corral.cli._config import config_app  # noqa: E402
from corral.cli._export import export  # noqa: E402
from corral.cli._lint import lint_command  # noqa: E402

app.registered_commands.extend(_dashboard.app.registered_commands)
app.command("lint")(lint_command)
app.command()(export)
app.add_typer(chaos_app, name="chaos")
app.add_typer(config_app, name="config")
