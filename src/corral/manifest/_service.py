"""The ``services:`` section: what to run, how many, how to check and restart it."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from corral.manifest._autoscale import AutoscaleSpec
from corral.manifest._diagnostics import SHOWN_CHARACTERS, printable, shown
from corral.manifest._secrets import SecretRef
from corral.manifest._types import (
    STRICT,
    Argv,
    Bool,
    Cpu,
    Duration,
    EnvName,
    Int,
    MemoryBytes,
    Name,
    Number,
    parse_env,
    problem,
)


class CheckSpec(BaseModel):
    """A health check: exactly one of ``http``, ``tcp`` or ``command``."""

    model_config = STRICT

    http: str | None = Field(default=None, description="HTTP GET path; 2xx/3xx passes.")
    tcp: Bool | None = Field(
        default=None, description="Passes when the port accepts a TCP connection."
    )
    command: Argv | None = Field(default=None, description="Passes when the command exits 0.")
    period: Duration = Field(default=1.0, gt=0, description="Time between checks.")
    timeout: Duration = Field(default=1.0, gt=0, description="Time one check may take.")
    failure_threshold: Int = Field(default=3, ge=1, description="Consecutive failures that count.")
    initial_delay: Duration = Field(default=0.0, description="Wait before the first check.")

    @field_validator("http")
    @classmethod
    def _http_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise problem(
                f"an HTTP check path must start with '/', got {shown(value)}",
                f"did you mean {shown('/' + value)}?",
            )
        return value

    @model_validator(mode="after")
    def _exactly_one_probe(self) -> Self:
        kinds = [k for k in ("http", "tcp", "command") if getattr(self, k) not in (None, False)]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"a check needs exactly one of http, tcp or command (found: {found})")
        return self

    @property
    def kind(self) -> Literal["http", "tcp", "command"]:
        if self.http is not None:
            return "http"
        if self.tcp:
            return "tcp"
        return "command"


def _check_shorthand(value: Any) -> Any:
    """``readiness: /readyz`` is short for ``readiness: {http: /readyz}``."""
    if isinstance(value, str):
        return {"http": value}
    return value


Check = Annotated[CheckSpec, BeforeValidator(_check_shorthand)]


class RestartPolicy(StrEnum):
    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class BackoffSpec(BaseModel):
    """Exponential backoff with full jitter between restarts of a crashing instance."""

    model_config = STRICT

    initial: Duration = Field(default=0.1, gt=0)
    max: Duration = Field(default=30.0, gt=0)
    multiplier: Number = Field(default=2.0, ge=1.0)
    reset_after: Duration = Field(
        default=10.0, description="An instance up this long has its backoff reset."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max < self.initial:
            raise problem(
                f"backoff max ({self.max:g}s) is smaller than initial ({self.initial:g}s)",
                at="max",
            )
        return self


class RestartSpec(BaseModel):
    model_config = STRICT

    policy: RestartPolicy = RestartPolicy.ALWAYS
    backoff: BackoffSpec = BackoffSpec()


def _restart_shorthand(value: Any) -> Any:
    """``restart: on-failure`` is short for ``restart: {policy: on-failure}``."""
    if isinstance(value, str):
        return {"policy": value}
    return value


class Condition(StrEnum):
    STARTED = "started"
    HEALTHY = "healthy"


def _depends_on_shorthand(value: Any) -> Any:
    """``depends_on: [db, cache]`` means each must be started; a mapping names conditions."""
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise ValueError("depends_on is a list of service names or a mapping name: condition")
        return dict.fromkeys(value, Condition.STARTED.value)
    return value


class ResourcesSpec(BaseModel):
    """Resource hints. Not enforced locally; exported as requests/limits."""

    model_config = STRICT

    cpu: Cpu | None = Field(default=None, gt=0)
    memory: MemoryBytes | None = Field(default=None, gt=0)


class DatabaseEngine(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"
    NONE = "none"


_DB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class DatabaseSpec(BaseModel):
    """This service's own database. Two services may never share one."""

    model_config = STRICT

    engine: DatabaseEngine | None = Field(
        default=None, description="sqlite (default) or postgres; none for no database."
    )
    name: str | None = Field(default=None, description="Database name; default <service>.")

    @field_validator("name")
    @classmethod
    def _db_name(cls, value: str | None) -> str | None:
        if value is not None and not _DB_NAME.match(value):
            raise ValueError(
                f"invalid database name {shown(value)}: lower-case letters, digits and '_', "
                "starting with a letter"
            )
        return value


class LintSpec(BaseModel):
    """``corral lint`` rules silenced for this service (ids or names; checked by lint)."""

    model_config = STRICT

    ignore: tuple[str, ...] = Field(default=(), description="Rule ids or names, e.g. CL301.")


def _database_shorthand(value: Any) -> Any:
    """``database: postgres`` / ``database: none`` / ``database: false``."""
    if value is False:
        return {"engine": "none"}
    if isinstance(value, str):
        return {"engine": value}
    return value


def _calls_list(value: Any) -> Any:
    """``calls: payments`` is a mistake for ``calls: [payments]``, said as such."""
    if isinstance(value, str):
        raise problem(
            f"calls is a list of service names, got {shown(value)}",
            f"write it as calls: [{printable(value, SHOWN_CHARACTERS)}]",
        )
    return value


class ServiceSpec(BaseModel):
    """One service: a program run as one or more identical instances."""

    model_config = STRICT

    command: Argv | None = Field(default=None, description="Program and arguments to run.")
    app: str | None = Field(
        default=None,
        description="module:attribute of a corral.sdk Service, served by `corral serve`.",
    )
    workdir: str | None = Field(
        default=None, description="Working directory, relative to the manifest."
    )
    replicas: Int = Field(default=1, ge=0, le=64)
    port: Int | None = Field(
        default=None, ge=1, le=65535, description="Fixed port; allocated when omitted."
    )
    env: Annotated[dict[EnvName, str], BeforeValidator(parse_env)] = Field(default_factory=dict)
    secrets: dict[EnvName, SecretRef] = Field(
        default_factory=dict,
        description="Variables whose values come from the environment or a file, never "
        "from the manifest: NAME: {env: VAR} or NAME: {file: path}.",
    )
    readiness: Check | None = None
    liveness: Check | None = None
    startup: Check | None = None
    depends_on: Annotated[dict[Name, Condition], BeforeValidator(_depends_on_shorthand)] = Field(
        default_factory=dict
    )
    restart: Annotated[RestartSpec, BeforeValidator(_restart_shorthand)] = RestartSpec()
    stop_grace_period: Duration = Field(default=10.0)
    resources: ResourcesSpec = ResourcesSpec()
    labels: dict[str, str] = Field(default_factory=dict)
    database: Annotated[DatabaseSpec, BeforeValidator(_database_shorthand)] = DatabaseSpec()
    calls: Annotated[tuple[Name, ...] | None, BeforeValidator(_calls_list)] = Field(
        default=None,
        description="Services this one calls synchronously (svc.client); unset: not declared.",
    )
    lint: LintSpec = LintSpec()
    autoscale: AutoscaleSpec | None = Field(
        default=None,
        description="{min, max, target}: replicas follow load (docs/autoscale.md).",
    )
    watch: tuple[str, ...] | None = Field(
        default=None,
        description="What `corral up --watch` reloads this service for: gitignore-style "
        "patterns relative to its workdir (default: the app's package, else the workdir).",
    )

    @field_validator("watch")
    @classmethod
    def _watch_patterns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise problem("watch needs at least one pattern", "omit 'watch' for the default")
        for pattern in value:
            if not pattern.strip() or pattern.startswith("/"):
                raise problem(
                    f"invalid watch pattern {shown(pattern)}",
                    "patterns are relative to the service's workdir, e.g. src/**/*.py",
                )
        return value

    @field_validator("app")
    @classmethod
    def _app_target(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[\w.]+:[\w.]+$", value):
            raise problem(
                f"app must be 'module:attribute', got {shown(value)}",
                "name the module and the Service object in it, e.g. app: orders.main:service",
            )
        return value

    @model_validator(mode="after")
    def _command_or_app(self) -> Self:
        if (self.command is None) == (self.app is None):
            if self.command is None:
                raise problem(
                    "a service needs 'command' or 'app'",
                    "command: the program to run; app: module:attribute of a corral.sdk Service",
                )
            raise problem("a service has either 'command' or 'app', not both", at="app")
        if self.port is not None and self.autoscale is not None and self.autoscale.max > 1:
            raise problem(
                f"fixed port {self.port} cannot be shared by up to {self.autoscale.max} "
                "autoscaled replicas",
                "drop 'port' to have a port allocated per replica, or use autoscale max 1",
                at="port",
            )
        if self.port is not None and self.replicas > 1:
            raise problem(
                f"fixed port {self.port} cannot be shared by {self.replicas} replicas",
                "drop 'port' to have a port allocated per replica, or use replicas: 1",
                at="port",
            )
        return self
